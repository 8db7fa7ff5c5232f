//! The two Twilio flows, each one transaction that claims the idempotency
//! key first and completes the receipt last.
//!
//! Invariants:
//! - One message row per `MessageSid` (unique), one lead per unknown sender
//!   (the sender is locked until commit), one feed event per message (V11 trigger).
//! - A status only moves forward (`status::MessageStatus::may_become`);
//!   every callback is kept in `message_status_events`, applied or not.
//! - Media is not fetched here: one `fetch_twilio_media` job per file goes
//!   through the outbox with the message.

use super::{
    form::{Channel, InboundMessage, StatusCallback},
    status::{self, Keyword, MessageStatus},
    store::{self, NewInbound, PhoneMatch, StatusEvent},
};
use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Receipt, Source},
    },
    error::WebhookError,
    fields::clip,
    jobs::{self, FetchTwilioMedia, MediaJob},
    types::{IdempotencyKey, PayloadHash},
};
use anyhow::Context;
use serde_json::{Value, json};

/// Longest body stored (WhatsApp's limit); the timeline keeps the first 4,000 characters.
const MAX_BODY_CHARS: usize = 4096;

pub async fn inbound<C: GenericClient>(
    db: &mut C,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    msg: &InboundMessage,
    payload: &Value,
) -> Result<Receipt, WebhookError> {
    let tx = db
        .transaction()
        .await
        .context("starting the inbound message transaction")?;
    let claim =
        webhook_events::claim(&tx, Source::Twilio, key, hash, "message_in", payload).await?;
    let Receipt::New { event_id, .. } = claim else {
        tx.rollback().await.context("releasing the claim")?;
        return Ok(claim);
    };

    store::lock_sender(&tx, &msg.from).await?;
    let (contact_id, contact_created, phone_match) =
        match store::find_contact(&tx, &msg.from).await? {
            Some((id, how)) => (id, false, how),
            None => {
                let name = msg
                    .profile_name
                    .clone()
                    .unwrap_or_else(|| format!("Yeni Lead ({})", msg.from));
                let id = store::create_lead(&tx, &msg.from, &name).await?;
                (id, true, PhoneMatch::Exact)
            }
        };
    if msg.channel == Channel::Whatsapp {
        let profile = json!({"wa_id": msg.wa_id, "profile_name": msg.profile_name});
        let profile: serde_json::Map<String, Value> = profile
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !profile.is_empty() {
            store::remember_whatsapp(&tx, contact_id, &Value::Object(profile)).await?;
        }
    }
    let deal_id = if contact_created {
        let title = match msg.channel {
            Channel::Whatsapp => "WhatsApp lead",
            Channel::Sms => "SMS lead",
        };
        store::open_lead_deal(&tx, contact_id, title, event_id).await?
    } else {
        None
    };

    let body = msg.body.as_deref().map(|b| clip(b, MAX_BODY_CHARS));
    let new = NewInbound {
        channel: msg.channel,
        contact_id,
        body: body.as_deref(),
        sid: msg.sid.as_str(),
        num_media: i32::try_from(msg.media.len()).unwrap_or(i32::MAX),
        wa_id: msg.wa_id.as_deref(),
        profile_name: msg.profile_name.as_deref(),
        event_id,
    };
    let Some(message_id) = store::insert_inbound(&tx, &new).await? else {
        // Stored under another key before (cannot happen with SID keys, but the SID is the truth).
        let result = json!({"status": "ok", "kind": "message_in", "idempotency_key": key.as_str(),
                            "duplicate_sid": true});
        webhook_events::complete(&tx, event_id, "ignored", &result).await?;
        tx.commit().await.context("committing the receipt")?;
        return Ok(Receipt::New { event_id, result });
    };
    let metadata = json!({"message_id": message_id, "channel": msg.channel.as_str(),
                          "num_media": msg.media.len(), "provider_sid": msg.sid.as_str()});
    let activity_id = store::log_inbound(
        &tx,
        contact_id,
        body.as_deref().map(|b| clip(b, 4000)).as_deref(),
        &metadata,
        event_id,
    )
    .await?;

    // Keywords change consent only for the number exactly as stored: a STOP
    // from another spelling of it is kept as a message, nothing more.
    let keyword = status::keyword(msg.body.as_deref()).filter(|_| phone_match == PhoneMatch::Exact);
    let opt_out = match keyword {
        Some(Keyword::OptOut) => {
            let word = msg
                .body
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_uppercase();
            store::opt_out(&tx, contact_id, msg.channel, &format!("keyword {word}")).await?;
            Some("opted_out")
        }
        Some(Keyword::OptIn) => {
            store::opt_in(&tx, contact_id, msg.channel).await?;
            Some("resubscribed")
        }
        None => None,
    };
    for (index, media) in msg.media.iter().enumerate() {
        let job = MediaJob::FetchTwilioMedia(FetchTwilioMedia {
            v: 1,
            message_id,
            index: u8::try_from(index).context("media index")?,
            url: media.url.clone(),
            content_type: media.content_type.clone(),
        });
        jobs::enqueue_media(&tx, &job).await?;
    }

    let result = json!({
        "status": "ok",
        "kind": "message_in",
        "idempotency_key": key.as_str(),
        "message_id": message_id,
        "channel": msg.channel.as_str(),
        "contact_id": contact_id,
        "contact_created": contact_created,
        "deal_id": deal_id,
        "activity_id": activity_id,
        "opt_out": opt_out,
        "media_jobs": msg.media.len(),
    });
    webhook_events::complete(&tx, event_id, "processed", &result).await?;
    tx.commit()
        .await
        .context("committing the inbound message")?;
    Ok(Receipt::New { event_id, result })
}

pub async fn status_callback<C: GenericClient>(
    db: &mut C,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    cb: &StatusCallback,
    payload: &Value,
) -> Result<Receipt, WebhookError> {
    let tx = db
        .transaction()
        .await
        .context("starting the status callback transaction")?;
    let claim =
        webhook_events::claim(&tx, Source::Twilio, key, hash, "message_status", payload).await?;
    let Receipt::New { event_id, .. } = claim else {
        tx.rollback().await.context("releasing the claim")?;
        return Ok(claim);
    };
    let from = cb
        .status
        .map(MessageStatus::predecessors)
        .unwrap_or_default();
    let error = cb.error_code.map(|c| (c, status::error_message(c)));
    let outcome = store::apply_status(
        &tx,
        cb.sid.as_str(),
        cb.status.map(MessageStatus::as_str),
        &from,
        error,
    )
    .await?;
    store::record_status_event(
        &tx,
        &StatusEvent {
            message_id: outcome.message_id,
            sid: cb.sid.as_str(),
            status: &cb.raw_status,
            error_code: cb.error_code,
            applied: outcome.applied,
            payload,
            event_id,
        },
    )
    .await?;
    let result = json!({
        "status": "ok",
        "kind": "message_status",
        "idempotency_key": key.as_str(),
        "message_id": outcome.message_id,
        "message_status": outcome.status,
        "applied": outcome.applied,
    });
    webhook_events::complete(&tx, event_id, "processed", &result).await?;
    tx.commit()
        .await
        .context("committing the status callback")?;
    Ok(Receipt::New { event_id, result })
}
