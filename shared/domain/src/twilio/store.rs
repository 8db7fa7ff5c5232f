//! SQL of the Twilio webhook (migrations/V8): sender matching, the lead and
//! its deal, messages, status callbacks and opt-outs. Every
//! function runs inside the caller's transaction.

use super::form::Channel;
use crate::{db::GenericClient, phone::PhoneE164};
use anyhow::Context;
use serde_json::Value;
use uuid::Uuid;

pub const ACTOR: &str = "twilio";

/// Serialises work on one sender until commit, so two first messages from
/// an unknown number (different SIDs, same moment) create one lead.
pub async fn lock_sender(db: &impl GenericClient, phone: &PhoneE164) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("select pg_advisory_xact_lock(hashtextextended('twilio_sender:' || $1, 0))")
        .await
        .context("preparing the sender lock")?;
    db.execute(&stmt, &[&phone.as_str()])
        .await
        .context("locking the sender")?;
    Ok(())
}

/// How a stored contact's phone relates to the sender's E.164.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneMatch {
    /// The stored phone is the sender's E.164 exactly.
    Exact,
    /// Another spelling of the same number in the same country (`PhoneE164::variants`).
    Variant,
}

/// The contact a sender is: exact E.164 first, then its other spellings in
/// the same country (trunk 0 kept, a Brazilian mobile without the 9th
/// digit). Nothing looser: another country's number with the same last
/// digits is another person (issue 13).
pub async fn find_contact(
    db: &impl GenericClient,
    phone: &PhoneE164,
) -> anyhow::Result<Option<(Uuid, PhoneMatch)>> {
    let stmt = db
        .prepare_cached(
            "select id, phone = $2 from contacts where phone = any($1) \
             order by (phone = $2) desc, created_at, id limit 1",
        )
        .await
        .context("preparing the contact lookup by phone")?;
    let variants = phone.variants();
    let row = db
        .query_opt(&stmt, &[&variants, &phone.as_str()])
        .await
        .context("looking up the contact by phone")?;
    Ok(row.map(|row| {
        let how = if row.get::<_, bool>(1) {
            PhoneMatch::Exact
        } else {
            PhoneMatch::Variant
        };
        (row.get(0), how)
    }))
}

/// A sender nobody registered: an unregistered lead named after its
/// WhatsApp profile, else `Yeni Lead (<phone>)`; owned by whoever the
/// Twilio lead routing rule names (`crm::routing`).
pub async fn create_lead(
    db: &impl GenericClient,
    phone: &PhoneE164,
    name: &str,
) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached(
            "insert into contacts (phone, full_name, source, is_unregistered) values ($1, $2, 'twilio', true) \
             on conflict (phone) do nothing returning id",
        )
        .await
        .context("preparing the lead insert")?;
    if let Some(row) = db
        .query_opt(&stmt, &[&phone.as_str(), &name])
        .await
        .context("creating the lead")?
    {
        let id: Uuid = row.get(0);
        crate::crm::routing::route_new_contact(db, id, crate::crm::routing::Source::Twilio).await?;
        return Ok(id);
    }
    // Registered in the meantime under exactly this number (e.g. through the CRM API).
    let existing = db
        .prepare_cached("select id from contacts where phone = $1")
        .await
        .context("preparing the contact lookup")?;
    let row = db
        .query_one(&existing, &[&phone.as_str()])
        .await
        .context("reading the contact that took the number")?;
    Ok(row.get(0))
}

/// Keeps the WhatsApp id and profile name under `attributes.whatsapp`; writes only when they changed.
pub async fn remember_whatsapp(
    db: &impl GenericClient,
    contact_id: Uuid,
    whatsapp: &Value,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update contacts set attributes = jsonb_set(attributes, '{whatsapp}', \
             coalesce(attributes -> 'whatsapp', '{}'::jsonb) || $2::jsonb), updated_at = now() \
             where id = $1 and not coalesce(attributes -> 'whatsapp', '{}'::jsonb) @> $2::jsonb",
        )
        .await
        .context("preparing the WhatsApp profile update")?;
    db.execute(&stmt, &[&contact_id, whatsapp])
        .await
        .context("keeping the WhatsApp profile")?;
    Ok(())
}

/// An open deal in the default pipeline's first stage, with its first
/// history row; `None` when the contact already has one there.
pub async fn open_lead_deal(
    db: &impl GenericClient,
    contact_id: Uuid,
    title: &str,
    event_id: Uuid,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached(
            "with target as ( \
                 select p.id as pipeline_id, s.id as stage_id from pipelines p \
                 cross join lateral (select id from pipeline_stages where pipeline_id = p.id and kind = 'open' \
                                     order by position limit 1) s \
                 where p.is_default), \
             deal as ( \
                 insert into deals (contact_id, pipeline_id, stage_id, title, source) \
                 select $1, pipeline_id, stage_id, $2, 'twilio' from target \
                 on conflict (contact_id, pipeline_id) where status = 'open' do nothing \
                 returning id, stage_id), \
             history as ( \
                 insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor, source_event_id) \
                 select id, null, stage_id, $3, $4 from deal) \
             select id from deal",
        )
        .await
        .context("preparing the lead deal insert")?;
    let row = db
        .query_opt(&stmt, &[&contact_id, &title, &ACTOR, &event_id])
        .await
        .context("opening the lead's deal")?;
    Ok(row.map(|r| r.get(0)))
}

pub struct NewInbound<'a> {
    pub channel: Channel,
    pub contact_id: Uuid,
    pub body: Option<&'a str>,
    pub sid: &'a str,
    pub num_media: i32,
    pub wa_id: Option<&'a str>,
    pub profile_name: Option<&'a str>,
    pub event_id: Uuid,
}

/// Stores an inbound message; `None` when its SID is already stored.
pub async fn insert_inbound(
    db: &impl GenericClient,
    m: &NewInbound<'_>,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached(
            "insert into messages (direction, channel, contact_id, body, provider_sid, status, num_media, \
             wa_id, profile_name, source_event_id) \
             values ('in', $1, $2, $3, $4, 'received', $5, $6, $7, $8) \
             on conflict (provider_sid) do nothing returning id",
        )
        .await
        .context("preparing the message insert")?;
    let row = db
        .query_opt(
            &stmt,
            &[
                &m.channel.as_str(),
                &m.contact_id,
                &m.body,
                &m.sid,
                &m.num_media,
                &m.wa_id,
                &m.profile_name,
                &m.event_id,
            ],
        )
        .await
        .context("storing the inbound message")?;
    Ok(row.map(|r| r.get(0)))
}

/// The `message_in` timeline entry (on the contact's open deal, if any).
/// Nothing else is raised: unread is the message's own `is_read`, and the
/// console learns of it from the durable feed (V20 dropped `notifications`).
pub async fn log_inbound(
    db: &impl GenericClient,
    contact_id: Uuid,
    body: Option<&str>,
    metadata: &Value,
    event_id: Uuid,
) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached(
            "insert into activities (type, contact_id, deal_id, body, metadata, actor, source_event_id) \
             values ('message_in', $1, (select id from deals where contact_id = $1 and status = 'open' \
                                        order by created_at desc limit 1), $2, $3, $4, $5) \
             returning id",
        )
        .await
        .context("preparing the timeline entry")?;
    let row = db
        .query_one(&stmt, &[&contact_id, &body, metadata, &ACTOR, &event_id])
        .await
        .context("logging the inbound message")?;
    Ok(row.get(0))
}

/// Records an opt-out for the channel (kept when one exists).
pub async fn opt_out(
    db: &impl GenericClient,
    contact_id: Uuid,
    channel: Channel,
    reason: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into opt_outs (contact_id, channel, source, reason) values ($1, $2, 'twilio', $3) \
             on conflict (contact_id, channel) do nothing",
        )
        .await
        .context("preparing the opt-out")?;
    db.execute(&stmt, &[&contact_id, &channel.as_str(), &reason])
        .await
        .context("recording the opt-out")?;
    Ok(())
}

/// START: the contact hears from us again on the channel.
pub async fn opt_in(
    db: &impl GenericClient,
    contact_id: Uuid,
    channel: Channel,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("delete from opt_outs where contact_id = $1 and channel = $2")
        .await
        .context("preparing the opt-in")?;
    db.execute(&stmt, &[&contact_id, &channel.as_str()])
        .await
        .context("removing the opt-out")?;
    Ok(())
}

/// Where a status callback left its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOutcome {
    pub message_id: Option<Uuid>,
    pub status: Option<String>,
    pub applied: bool,
}

/// Moves the message with this SID to `status` when it is in one of
/// `from` (forward only); the error code and its words go with it.
pub async fn apply_status(
    db: &impl GenericClient,
    sid: &str,
    status: Option<&str>,
    from: &[&str],
    error: Option<(i32, String)>,
) -> anyhow::Result<StatusOutcome> {
    if let Some(status) = status {
        let update = db
            .prepare_cached(
                "update messages set status = $2, status_updated_at = now(), updated_at = now(), \
                 error_code = coalesce($4, error_code), error_message = coalesce($5, error_message) \
                 where provider_sid = $1 and status = any($3) returning id, status",
            )
            .await
            .context("preparing the status update")?;
        let (code, words) = error.unzip();
        if let Some(row) = db
            .query_opt(&update, &[&sid, &status, &from, &code, &words])
            .await
            .context("moving the message status")?
        {
            // A campaign message: its ledger row follows, in this transaction.
            crate::campaigns::delivery::follow_message(db, row.get(0)).await?;
            return Ok(StatusOutcome {
                message_id: Some(row.get(0)),
                status: Some(row.get(1)),
                applied: true,
            });
        }
    }
    let current = db
        .prepare_cached("select id, status from messages where provider_sid = $1")
        .await
        .context("preparing the message lookup by SID")?;
    let row = db
        .query_opt(&current, &[&sid])
        .await
        .context("reading the message status")?;
    Ok(StatusOutcome {
        message_id: row.as_ref().map(|r| r.get(0)),
        status: row.as_ref().map(|r| r.get(1)),
        applied: false,
    })
}

pub struct StatusEvent<'a> {
    pub message_id: Option<Uuid>,
    pub sid: &'a str,
    pub status: &'a str,
    pub error_code: Option<i32>,
    pub applied: bool,
    pub payload: &'a Value,
    pub event_id: Uuid,
}

/// Keeps the raw callback, applied or not.
pub async fn record_status_event(
    db: &impl GenericClient,
    e: &StatusEvent<'_>,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into message_status_events (message_id, provider_sid, status, error_code, applied, payload, \
             webhook_event_id) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .context("preparing the status event insert")?;
    db.execute(
        &stmt,
        &[
            &e.message_id,
            &e.sid,
            &e.status,
            &e.error_code,
            &e.applied,
            e.payload,
            &e.event_id,
        ],
    )
    .await
    .context("keeping the status callback")?;
    Ok(())
}
