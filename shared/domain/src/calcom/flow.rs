//! The booking flow, in one transaction: claim the idempotency key, then
//! book (created or rescheduled) or cancel, then complete the receipt with
//! the answer replays will get.
//!
//! Invariants:
//! - One meeting activity per meeting: a reschedule follows `rescheduleUid`
//!   to the original row and rewrites that activity; a delivery of a known
//!   uid under another idempotency key updates, never duplicates.
//! - Stage moves go through `pipeline::move_stage` (history, system activity,
//!   `deal.stage_changed` outbox job), actor `calcom`. A booking moves a deal
//!   forward to Meeting Scheduled only; a cancellation moves it back to the
//!   stage it held before the booking, only while it still sits in Meeting
//!   Scheduled and no other booking on it stands.
//! - Work on one booking uid is serialised (advisory lock), whatever key each
//!   delivery carried.

use super::{
    payload::{Booking, Trigger},
    store::{self, ACTOR, BookingRow, Deal, NewActivity, NewBooking},
};
use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Receipt, Source},
    },
    error::WebhookError,
    fields::clip,
    pipeline::{self, MoveOutcome},
    types::{IdempotencyKey, PayloadHash},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// Runs the flow for one booking trigger. Anything but `Receipt::New` is
/// answered from the claim with nothing written.
pub async fn apply<C: GenericClient>(
    db: &mut C,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    booking: &Booking,
    payload: &Value,
) -> Result<Receipt, WebhookError> {
    let tx = db
        .transaction()
        .await
        .context("starting the booking transaction")?;
    let claim = webhook_events::claim(
        &tx,
        Source::Calcom,
        key,
        hash,
        booking.trigger.as_str(),
        payload,
    )
    .await?;
    let Receipt::New { event_id, .. } = claim else {
        tx.rollback().await.context("releasing the claim")?;
        return Ok(claim);
    };
    let ctx = Ctx {
        key,
        event_id,
        b: booking,
    };
    let result = match booking.trigger {
        Trigger::Created | Trigger::Rescheduled => book(&tx, &ctx).await?,
        Trigger::Cancelled => cancel(&tx, &ctx).await?,
    };
    webhook_events::complete(&tx, event_id, "processed", &result).await?;
    tx.commit().await.context("committing the booking")?;
    Ok(Receipt::New { event_id, result })
}

struct Ctx<'a> {
    key: &'a IdempotencyKey,
    event_id: Uuid,
    b: &'a Booking,
}

impl Ctx<'_> {
    fn answer(
        &self,
        status: &str,
        contact_ids: &[Uuid],
        deal: Option<Uuid>,
        meeting: Option<Uuid>,
        stage: Option<&str>,
    ) -> Value {
        json!({
            "status": "ok",
            "trigger": self.b.trigger.as_str(),
            "idempotency_key": self.key.as_str(),
            "booking_uid": self.b.uid,
            "booking_status": status,
            "contact_ids": contact_ids,
            "deal_id": deal,
            "meeting_activity_id": meeting,
            "deal_stage": stage,
        })
    }
}

/// BOOKING_CREATED and BOOKING_RESCHEDULED: contacts, deal, stage, one meeting.
async fn book(tx: &impl GenericClient, ctx: &Ctx<'_>) -> anyhow::Result<Value> {
    let b = ctx.b;
    let mut uids = vec![b.uid.as_str()];
    uids.extend(b.reschedule_uid.as_deref());
    store::lock_bookings(tx, &uids).await?;
    let contact_ids = store::upsert_contacts(tx, &b.attendees).await?;
    let existing = store::find_booking(tx, &b.uid).await?;
    if let Some(row) = existing.as_ref().filter(|r| r.status != "scheduled") {
        // A late or re-keyed trigger of a booking already cancelled or replaced does not bring it back.
        let stage = current_stage(tx, row.deal_id).await?;
        return Ok(ctx.answer(
            &row.status,
            &contact_ids,
            row.deal_id,
            row.meeting_activity_id,
            stage.as_deref(),
        ));
    }
    let origin = match (&existing, b.reschedule_uid.as_deref()) {
        (None, Some(old)) => store::find_booking(tx, old).await?,
        _ => None,
    };
    // The row whose meeting and deal this booking continues: itself when known, else the one it replaces.
    let base = existing.as_ref().or(origin.as_ref());
    let kept = match base.and_then(|r| r.deal_id) {
        Some(id) => store::lock_deal(tx, id).await?,
        None => None,
    };
    let deal = match kept {
        Some(deal) => deal,
        None => {
            let pipeline = store::default_pipeline(tx).await?;
            store::find_or_create_deal(tx, contact_ids[0], &pipeline, &deal_title(b), ctx.event_id)
                .await?
        }
    };
    let stage_before = match base.and_then(|r| r.stage_before_id) {
        Some(stage) => Some(stage),
        None => stage_before(tx, &deal).await?,
    };
    let stage = advance(tx, &deal, ctx.event_id).await?;

    let primary = base.map_or(contact_ids[0], |r| r.contact_id);
    let body = meeting_body(b, None);
    let metadata = meeting_metadata(b, &contact_ids, "scheduled");
    let meeting = match base.and_then(|r| r.meeting_activity_id) {
        Some(id) => {
            // A meeting cancelled on Cal.com's "request reschedule" and now rebooked stands again.
            let mut metadata = metadata;
            metadata["cancelled_at"] = Value::Null;
            metadata["cancellation_reason"] = Value::Null;
            store::update_meeting(tx, id, &body, &metadata, b.start, &b.uid).await?;
            id
        }
        None => {
            let mut metadata = metadata;
            metadata["booking_uids"] = json!([b.uid]);
            let activity = NewActivity {
                kind: "meeting",
                contact_id: primary,
                deal_id: Some(deal.id),
                body: &body,
                metadata: &metadata,
                occurred_at: b.start,
            };
            store::insert_activity(tx, &activity, ctx.event_id).await?
        }
    };
    let row = BookingRow {
        uid: b.uid.clone(),
        contact_id: primary,
        attendee_contact_ids: contact_ids.clone(),
        deal_id: Some(deal.id),
        meeting_activity_id: Some(meeting),
        stage_before_id: stage_before,
        status: "scheduled".into(),
    };
    store::save_booking(tx, &new_booking(ctx, &row)).await?;
    if let Some(origin) = &origin {
        store::mark_rescheduled(tx, &origin.uid, &b.uid, ctx.event_id).await?;
    }
    let mut answer = ctx.answer(
        "scheduled",
        &contact_ids,
        Some(deal.id),
        Some(meeting),
        Some(&stage),
    );
    if let Some(old) = &b.reschedule_uid {
        answer["rescheduled_from"] = json!(old);
    }
    Ok(answer)
}

/// BOOKING_CANCELLED: the meeting marked, a cancellation logged, the deal moved back.
async fn cancel(tx: &impl GenericClient, ctx: &Ctx<'_>) -> anyhow::Result<Value> {
    let b = ctx.b;
    store::lock_bookings(tx, &[&b.uid]).await?;
    let contact_ids = store::upsert_contacts(tx, &b.attendees).await?;
    let found = store::find_booking(tx, &b.uid).await?;
    if let Some(row) = found.as_ref().filter(|r| r.status != "scheduled") {
        let stage = current_stage(tx, row.deal_id).await?;
        return Ok(ctx.answer(
            &row.status,
            &contact_ids,
            row.deal_id,
            row.meeting_activity_id,
            stage.as_deref(),
        ));
    }
    let row = match found {
        Some(row) => row,
        // Never seen (booked before this CRM listened, or the creation is still on its way):
        // recorded as cancelled, so a late BOOKING_CREATED does not schedule it.
        None => {
            let pipeline = store::default_pipeline(tx).await?;
            let deal = store::open_deal(tx, contact_ids[0], pipeline.id).await?;
            BookingRow {
                uid: b.uid.clone(),
                contact_id: contact_ids[0],
                attendee_contact_ids: contact_ids.clone(),
                deal_id: deal.map(|d| d.id),
                meeting_activity_id: None,
                stage_before_id: None,
                status: "scheduled".into(),
            }
        }
    };
    if let Some(meeting) = row.meeting_activity_id {
        let cancelled_at = b.created_at.unwrap_or_else(Utc::now);
        let mut metadata = meeting_metadata(b, &row.attendee_contact_ids, "cancelled");
        metadata["cancellation_reason"] = json!(b.cancellation_reason);
        metadata["cancelled_at"] = json!(cancelled_at);
        store::update_meeting(
            tx,
            meeting,
            &meeting_body(b, Some(cancelled_at)),
            &metadata,
            b.start,
            &b.uid,
        )
        .await?;
    }
    let cancelled = BookingRow {
        status: "cancelled".into(),
        attendee_contact_ids: contact_ids.clone(),
        ..row.clone()
    };
    store::save_booking(tx, &new_booking(ctx, &cancelled)).await?;

    let deal = match row.deal_id {
        Some(id) => store::lock_deal(tx, id).await?,
        None => None,
    };
    let mut stage = deal.as_ref().map(|d| d.stage_name.clone());
    if let (Some(deal), Some(before)) = (&deal, row.stage_before_id)
        && deal.meeting_stage.map(|(ms, _)| ms) == Some(deal.stage_id)
        && before != deal.stage_id
        && !store::has_scheduled_booking(tx, deal.id).await?
        && let MoveOutcome::Moved(moved) =
            pipeline::move_stage(tx, deal.id, before, ACTOR, Some(ctx.event_id))
                .await
                .context("moving the deal back")?
    {
        stage = Some(moved.to.name);
    }

    let when = b.start.format("%Y-%m-%d %H:%M UTC");
    let log = match &b.cancellation_reason {
        Some(reason) => format!(
            "Cal.com booking cancelled: {} ({when}). Reason: {reason}",
            b.title
        ),
        None => format!("Cal.com booking cancelled: {} ({when})", b.title),
    };
    let metadata = json!({
        "event": "meeting_cancelled",
        "source": "calcom",
        "booking_uid": b.uid,
        "meeting_activity_id": row.meeting_activity_id,
        "cancellation_reason": b.cancellation_reason,
        "deal_stage": stage,
    });
    let activity = NewActivity {
        kind: "system",
        contact_id: row.contact_id,
        deal_id: row.deal_id,
        body: &clip(log, 4000),
        metadata: &metadata,
        occurred_at: b.created_at.unwrap_or_else(Utc::now),
    };
    let logged = store::insert_activity(tx, &activity, ctx.event_id).await?;
    let mut answer = ctx.answer(
        "cancelled",
        &contact_ids,
        row.deal_id,
        row.meeting_activity_id,
        stage.as_deref(),
    );
    answer["cancellation_activity_id"] = json!(logged);
    Ok(answer)
}

fn new_booking<'a>(ctx: &'a Ctx<'_>, row: &'a BookingRow) -> NewBooking<'a> {
    NewBooking {
        uid: &ctx.b.uid,
        booking_id: ctx.b.booking_id,
        row,
        title: &ctx.b.title,
        start: ctx.b.start,
        end: ctx.b.end,
        rescheduled_from_uid: ctx.b.reschedule_uid.as_deref(),
        cancellation_reason: ctx.b.cancellation_reason.as_deref(),
        event_id: ctx.event_id,
    }
}

/// Forward only: an open deal before Meeting Scheduled moves there; any other stays. Returns the stage it ends in.
async fn advance(tx: &impl GenericClient, deal: &Deal, event_id: Uuid) -> anyhow::Result<String> {
    match deal.meeting_stage {
        Some((meeting, position)) if deal.kind == "open" && deal.position < position => {
            match pipeline::move_stage(tx, deal.id, meeting, ACTOR, Some(event_id))
                .await
                .context("moving the deal to Meeting Scheduled")?
            {
                MoveOutcome::Moved(moved) => Ok(moved.to.name),
                MoveOutcome::Unchanged => Ok(deal.stage_name.clone()),
            }
        }
        _ => Ok(deal.stage_name.clone()),
    }
}

/// The stage a cancellation should restore: the deal's stage now, unless another
/// standing booking already took it to Meeting Scheduled (then what that one restores).
async fn stage_before(tx: &impl GenericClient, deal: &Deal) -> anyhow::Result<Option<Uuid>> {
    if deal.meeting_stage.map(|(ms, _)| ms) == Some(deal.stage_id) {
        return Ok(store::standing_stage_before(tx, deal.id)
            .await?
            .or(Some(deal.stage_id)));
    }
    Ok(Some(deal.stage_id))
}

async fn current_stage(
    tx: &impl GenericClient,
    deal_id: Option<Uuid>,
) -> anyhow::Result<Option<String>> {
    match deal_id {
        Some(id) => Ok(store::lock_deal(tx, id).await?.map(|d| d.stage_name)),
        None => Ok(None),
    }
}

fn deal_title(b: &Booking) -> String {
    let who = b.attendees[0]
        .name
        .as_deref()
        .unwrap_or_else(|| b.attendees[0].email.as_str());
    clip(format!("{who} — Cal.com booking"), 200)
}

/// "<title> · 2026-11-25 17:00–17:30 UTC · <link or place>", prefixed when cancelled.
pub fn meeting_body(b: &Booking, cancelled_at: Option<DateTime<Utc>>) -> String {
    let end_format = if b.end.date_naive() == b.start.date_naive() {
        "%H:%M"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let mut body = format!(
        "{} · {}–{} UTC",
        b.title,
        b.start.format("%Y-%m-%d %H:%M"),
        b.end.format(end_format)
    );
    if let Some(place) = b.meeting_url.as_deref().or(b.location.as_deref()) {
        body.push_str(" · ");
        body.push_str(place);
    }
    if cancelled_at.is_some() {
        body.insert_str(0, "Cancelled: ");
    }
    clip(body, 4000)
}

fn meeting_metadata(b: &Booking, contact_ids: &[Uuid], status: &str) -> Value {
    let mut metadata = json!({
        "source": "calcom",
        "booking_uid": b.uid,
        "calcom_booking_id": b.booking_id,
        "status": status,
        "title": b.title,
        "start_time": b.start,
        "end_time": b.end,
        "location": b.location,
        "meeting_url": b.meeting_url,
        "organizer": {
            "name": b.organizer.name,
            "email": b.organizer.email.as_ref().map(|e| e.as_str()),
            "time_zone": b.organizer.time_zone,
        },
        "attendee_contact_ids": contact_ids,
    });
    // Only set, never cleared: a later trigger merged over this one keeps the link.
    if let Some(old) = &b.reschedule_uid {
        metadata["rescheduled_from"] = json!(old);
    }
    metadata
}
