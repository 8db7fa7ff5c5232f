//! The send side of the ledger: one `campaign_deliveries` row at a time, as
//! the send worker handles a `send_campaign_message` job.
//!
//! Invariants:
//! - The row is the idempotency record. Only a row in `sending` is worked
//!   on; every other status means the job was already handled (or the row
//!   was cancelled/re-queued meanwhile), so a job received twice does nothing
//!   the second time.
//! - Lock first, read second: `begin` locks the delivery row alone, then
//!   reads the campaign, template, contact, opt-outs and switch in new
//!   statements (a `for update` with joins that waited for the lock would
//!   read the joined tables as of its own start).
//! - E-mail and webhook: `attempted_at` is set in the same transaction that
//!   decides to call the provider, before the call; it is cleared only when
//!   the provider provably did not take the message (`release`). A row found
//!   with `attempted_at` set, no result and an expired lease is failed with
//!   error code `uncertain`, never resent blindly.
//! - WhatsApp/SMS: the row gets an outbound `messages` row (`message_id`)
//!   and the Twilio send path's own at-most-once record (`message_sends`)
//!   governs the call; the ledger follows the message (`sync_from_message`),
//!   also from Twilio's status callbacks, in the callback's transaction.
//! - Nothing here logs or stores a body, an address or a name: errors carry
//!   codes and variable names only.

mod record;
mod render;

pub use record::{
    follow_message, record_delivered, record_failed, record_sent, record_uncertain, release,
    status, sync_from_message,
};
pub use render::{Links, Rendered, render_all, unsubscribe_line};

use crate::{
    campaigns::{switch, template},
    db::GenericClient,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use render::positional;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// `error_code` of a row whose provider call has an unknown outcome.
pub const UNCERTAIN: &str = "uncertain";
/// `error_code` of a row whose template cannot be rendered for its contact.
pub const INVALID_TEMPLATE: &str = "invalid_template";
/// `error_code` of a row whose retries ran out.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// What a prepared e-mail or webhook delivery sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Email {
        to: String,
        subject: String,
        /// The rendered body, with the unsubscribe line appended unless the
        /// template already placed `{{unsubscribe_url}}`.
        text: String,
        /// For the `List-Unsubscribe` header.
        unsubscribe_url: String,
    },
    Webhook {
        body: String,
    },
}

/// An e-mail or webhook delivery claimed for one provider call.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub delivery_id: Uuid,
    pub campaign_id: Uuid,
    pub contact_id: Uuid,
    /// This attempt's number (1 on the first).
    pub attempt: i32,
    pub content: Content,
}

/// What `begin` decided for a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// No such row, or not `sending`: handled already.
    Done,
    /// Back to `queued` (released_at cleared) for the runner to release again:
    /// the campaign is paused (or not sending), or the CRM module is off.
    Requeued(&'static str),
    /// The campaign was cancelled: the row is `cancelled`.
    Cancelled,
    /// Not sent, with this `skip_reason` (`opted_out`, `no_address`, `window_closed`).
    Skipped(&'static str),
    /// Failed for good with this `error_code` (`invalid_template`, `uncertain`, …).
    Failed(String),
    /// Another receive is calling the provider for this row right now.
    Busy,
    /// E-mail/webhook: call the provider now, then `record_*` or `release`.
    Send(Prepared),
    /// WhatsApp/SMS: hand this outbound `messages` row to the Twilio send
    /// path, then `sync_from_message`.
    Message(Uuid),
}

struct Row {
    status: String,
    campaign_id: Uuid,
    contact_id: Uuid,
    message_id: Option<Uuid>,
    attempts: i32,
    attempted: Option<DateTime<Utc>>,
    attempt_is_fresh: bool,
}

/// Decides, under the row's lock, what to do with a released delivery, and
/// for e-mail/webhook claims the provider call (`attempted_at`, `attempts`)
/// or for WhatsApp/SMS creates the outbound message, in one transaction.
pub async fn begin(
    client: &mut deadpool_postgres::Client,
    delivery_id: Uuid,
    lease: Duration,
    links: Option<&Links>,
) -> anyhow::Result<Begin> {
    let tx = client
        .transaction()
        .await
        .context("starting the delivery claim")?;
    let row = tx
        .query_opt(
            "select status, campaign_id, contact_id, message_id, attempts, attempted_at, \
                    attempted_at > now() - make_interval(secs => $2) \
             from campaign_deliveries where id = $1 for update",
            &[&delivery_id, &lease.as_secs_f64()],
        )
        .await
        .context("locking the delivery")?;
    let Some(row) = row else {
        return Ok(Begin::Done);
    };
    let row = Row {
        status: row.get(0),
        campaign_id: row.get(1),
        contact_id: row.get(2),
        message_id: row.get(3),
        attempts: row.get(4),
        attempted: row.get(5),
        attempt_is_fresh: row.get::<_, Option<bool>>(6).unwrap_or(false),
    };
    if row.status != "sending" {
        return Ok(Begin::Done);
    }
    // An e-mail/webhook provider call was started and never recorded.
    if row.message_id.is_none() && row.attempted.is_some() {
        if row.attempt_is_fresh {
            return Ok(Begin::Busy);
        }
        fail(
            &tx,
            delivery_id,
            UNCERTAIN,
            "previous attempt outcome unknown: not resent",
        )
        .await?;
        tx.commit()
            .await
            .context("committing the uncertain failure")?;
        return Ok(Begin::Failed(UNCERTAIN.into()));
    }
    // The linked message is with (or past) Twilio: its own record decides.
    if let Some(message_id) = row.message_id
        && message_in_flight(&tx, message_id).await?
    {
        return Ok(Begin::Message(message_id));
    }
    let decided = decide(&tx, delivery_id, &row, links).await?;
    tx.commit().await.context("committing the delivery claim")?;
    Ok(decided)
}

/// Whether the linked message was already handed to (or attempted with)
/// Twilio, or is finished: then only the Twilio path's record counts.
async fn message_in_flight(db: &impl GenericClient, message_id: Uuid) -> anyhow::Result<bool> {
    let row = db
        .query_opt(
            "select m.status <> 'queued' or m.provider_sid is not null or s.attempted_at is not null \
             from messages m left join message_sends s on s.message_id = m.id where m.id = $1",
            &[&message_id],
        )
        .await
        .context("reading the linked message")?;
    // A message deleted with its contact: the delivery row went too (cascade).
    Ok(row.is_none_or(|r| r.get::<_, Option<bool>>(0).unwrap_or(true)))
}

/// The send-time checks, in order: campaign cancelled / not sending, module
/// switch, channel still enabled, template still approved, opt-out, address,
/// WhatsApp window, rendering.
async fn decide(
    tx: &impl GenericClient,
    delivery_id: Uuid,
    row: &Row,
    links: Option<&Links>,
) -> anyhow::Result<Begin> {
    let campaign = tx
        .query_one(
            "select c.status, c.channel, t.body, t.subject, t.content_sid, t.variables, \
                    t.status, coalesce(ch.enabled, false) \
             from campaigns c join message_templates t on t.id = c.template_id \
             left join channels ch on ch.name = c.channel where c.id = $1",
            &[&row.campaign_id],
        )
        .await
        .context("reading the delivery's campaign")?;
    let status: String = campaign.get(0);
    let channel: String = campaign.get(1);
    if status == "cancelled" {
        cancel(tx, delivery_id, row.message_id).await?;
        return Ok(Begin::Cancelled);
    }
    if status != "sending" {
        requeue(tx, delivery_id).await?;
        return Ok(Begin::Requeued("campaign_not_sending"));
    }
    if !switch::crm_enabled(tx)
        .await
        .context("reading the module switch")?
    {
        requeue(tx, delivery_id).await?;
        return Ok(Begin::Requeued("module_disabled"));
    }
    // The channel was disabled after the release: held, not sent (the runner
    // pauses the campaign; resuming re-releases the row).
    if !campaign.get::<_, bool>(7) {
        requeue(tx, delivery_id).await?;
        return Ok(Begin::Requeued("channel_disabled"));
    }
    // The template was withdrawn (pending, rejected, disabled) since the snapshot.
    let template_status: String = campaign.get(6);
    if template_status != "approved" {
        let reason = format!("the template is no longer approved (status {template_status})");
        fail(tx, delivery_id, INVALID_TEMPLATE, &reason).await?;
        cancel_message(tx, row.message_id).await?;
        return Ok(Begin::Failed(INVALID_TEMPLATE.into()));
    }
    let contact = tx
        .query_one(
            "select email, phone, \
                    exists (select 1 from opt_outs o where o.contact_id = c.id and o.channel = $2), \
                    exists (select 1 from messages m where m.contact_id = c.id and m.direction = 'in' \
                            and m.created_at > now() - interval '24 hours') \
             from contacts c where c.id = $1",
            &[&row.contact_id, &channel],
        )
        .await
        .context("reading the delivery's contact")?;
    let (email, phone): (Option<String>, Option<String>) = (contact.get(0), contact.get(1));
    if contact.get::<_, bool>(2) {
        skip(tx, delivery_id, "opted_out", row.message_id).await?;
        return Ok(Begin::Skipped("opted_out"));
    }
    if let Some(message_id) = row.message_id {
        // Created by an earlier receive, not yet attempted: send it as it is.
        return Ok(Begin::Message(message_id));
    }
    let no_address = match channel.as_str() {
        "email" => email.is_none(),
        "sms" | "whatsapp" => phone.is_none(),
        _ => false,
    };
    if no_address {
        skip(tx, delivery_id, "no_address", None).await?;
        return Ok(Begin::Skipped("no_address"));
    }
    let content_sid: Option<String> = campaign.get(4);
    if channel == "whatsapp" && content_sid.is_none() && !contact.get::<_, bool>(3) {
        skip(tx, delivery_id, "window_closed", None).await?;
        return Ok(Begin::Skipped("window_closed"));
    }
    let needs_link = matches!(channel.as_str(), "email" | "sms");
    let url = links.map(|l| l.url(row.contact_id, &channel, row.campaign_id, Utc::now()));
    let Some(url) = url.or((!needs_link).then(String::new)) else {
        fail(
            tx,
            delivery_id,
            "unsubscribe_unconfigured",
            "UNSUBSCRIBE_SECRET is not configured: e-mail and SMS campaign messages need an unsubscribe link",
        )
        .await?;
        return Ok(Begin::Failed("unsubscribe_unconfigured".into()));
    };
    let mut values = template::contact_values(tx, row.contact_id)
        .await
        .context("reading the contact's template values")?;
    if !url.is_empty() {
        values.insert(template::UNSUBSCRIBE_URL.to_string(), url.clone());
    }
    let positional: Vec<String> = positional(campaign.get(5));
    let body: String = campaign.get(2);
    let rendered = render_all(
        &channel,
        &body,
        campaign.get(3),
        content_sid.is_some(),
        &positional,
        &values,
        &url,
    );
    let rendered = match rendered {
        Ok(r) => r,
        Err(reason) => {
            fail(tx, delivery_id, INVALID_TEMPLATE, &reason).await?;
            return Ok(Begin::Failed(INVALID_TEMPLATE.into()));
        }
    };
    match channel.as_str() {
        "sms" | "whatsapp" => {
            let message_id = create_message(
                tx,
                delivery_id,
                row.contact_id,
                &channel,
                &rendered,
                content_sid,
            )
            .await?;
            Ok(Begin::Message(message_id))
        }
        _ => {
            tx.execute(
                "update campaign_deliveries set attempted_at = now(), attempts = attempts + 1, \
                   updated_at = now() where id = $1",
                &[&delivery_id],
            )
            .await
            .context("claiming the provider call")?;
            let content = match channel.as_str() {
                "email" => Content::Email {
                    to: email.unwrap_or_default(),
                    subject: rendered.subject.unwrap_or_default(),
                    text: rendered.text,
                    unsubscribe_url: url,
                },
                _ => Content::Webhook {
                    body: rendered.text,
                },
            };
            Ok(Begin::Send(Prepared {
                delivery_id,
                campaign_id: row.campaign_id,
                contact_id: row.contact_id,
                attempt: row.attempts + 1,
                content,
            }))
        }
    }
}

/// The outbound message of a WhatsApp/SMS delivery, linked to the row, with
/// its ContentVariables in `message_sends` for a content template.
async fn create_message(
    tx: &impl GenericClient,
    delivery_id: Uuid,
    contact_id: Uuid,
    channel: &str,
    rendered: &Rendered,
    content_sid: Option<String>,
) -> anyhow::Result<Uuid> {
    let id: Uuid = tx
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status, template_sid) \
             values ('out', $1, $2, $3, 'queued', $4) returning id",
            &[&channel, &contact_id, &rendered.text, &content_sid],
        )
        .await
        .context("creating the campaign message")?
        .get(0);
    if let Some(vars) = &rendered.variables {
        tx.execute(
            "insert into message_sends (message_id, content_variables) values ($1, $2)",
            &[&id, &Value::Object(vars.clone())],
        )
        .await
        .context("storing the content variables")?;
    }
    tx.execute(
        "update campaign_deliveries set message_id = $2, attempts = attempts + 1, updated_at = now() \
         where id = $1",
        &[&delivery_id, &id],
    )
    .await
    .context("linking the message to the delivery")?;
    Ok(id)
}

async fn requeue(db: &impl GenericClient, delivery_id: Uuid) -> anyhow::Result<()> {
    db.execute(
        "update campaign_deliveries set status = 'queued', released_at = null, updated_at = now() \
         where id = $1 and status = 'sending'",
        &[&delivery_id],
    )
    .await
    .context("putting the delivery back in the queue")?;
    Ok(())
}

/// A linked message not yet attempted is cancelled with its row.
async fn cancel_message(db: &impl GenericClient, message_id: Option<Uuid>) -> anyhow::Result<()> {
    if let Some(id) = message_id {
        db.execute(
            "update messages set status = 'canceled', status_updated_at = now(), updated_at = now() \
             where id = $1 and status = 'queued' and provider_sid is null",
            &[&id],
        )
        .await
        .context("cancelling the unsent campaign message")?;
    }
    Ok(())
}

async fn cancel(
    db: &impl GenericClient,
    delivery_id: Uuid,
    message_id: Option<Uuid>,
) -> anyhow::Result<()> {
    db.execute(
        "update campaign_deliveries set status = 'cancelled', updated_at = now() \
         where id = $1 and status = 'sending'",
        &[&delivery_id],
    )
    .await
    .context("cancelling the delivery")?;
    cancel_message(db, message_id).await
}

async fn skip(
    db: &impl GenericClient,
    delivery_id: Uuid,
    reason: &str,
    message_id: Option<Uuid>,
) -> anyhow::Result<()> {
    db.execute(
        "update campaign_deliveries set status = 'skipped', skip_reason = $2, updated_at = now() \
         where id = $1 and status = 'sending'",
        &[&delivery_id, &reason],
    )
    .await
    .context("skipping the delivery")?;
    cancel_message(db, message_id).await
}

async fn fail(
    db: &impl GenericClient,
    delivery_id: Uuid,
    code: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let reason: String = reason.chars().take(1000).collect();
    db.execute(
        "update campaign_deliveries set status = 'failed', error_code = $2, error = $3, \
           failed_at = now(), updated_at = now() \
         where id = $1 and status in ('sending', 'sent')",
        &[&delivery_id, &code, &reason],
    )
    .await
    .context("failing the delivery")?;
    Ok(())
}
