//! SQL of the Cal.com flow: contacts, deals, the meeting activity and the
//! `calcom_bookings` rows (migrations/V3). Every function runs inside the
//! caller's transaction.

use super::payload::Attendee;
use crate::db::GenericClient;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

pub const MEETING_STAGE: &str = "Meeting Scheduled";
pub const ACTOR: &str = "calcom";

/// The default pipeline's entry stage (where a new deal starts) and its Meeting Scheduled stage.
#[derive(Debug, Clone)]
pub struct DefaultPipeline {
    pub id: Uuid,
    pub entry_stage: Uuid,
}

pub async fn default_pipeline(db: &impl GenericClient) -> anyhow::Result<DefaultPipeline> {
    let stmt = db
        .prepare_cached(
            "select p.id, e.id from pipelines p \
             join pipeline_stages ms on ms.pipeline_id = p.id and ms.name = $1 \
             cross join lateral (select id from pipeline_stages where pipeline_id = p.id and kind = 'open' \
                                 order by position limit 1) e \
             where p.is_default",
        )
        .await
        .context("preparing the default pipeline lookup")?;
    let row = db
        .query_opt(&stmt, &[&MEETING_STAGE])
        .await
        .context("looking up the default pipeline")?
        .context("the default pipeline has no \"Meeting Scheduled\" stage")?;
    Ok(DefaultPipeline {
        id: row.get(0),
        entry_stage: row.get(1),
    })
}

/// Serialises the work on one booking (and on the one it replaces) until commit,
/// whichever idempotency key each delivery came with. Locks are taken in a fixed order.
pub async fn lock_bookings(db: &impl GenericClient, uids: &[&str]) -> anyhow::Result<()> {
    let mut keys: Vec<String> = uids.iter().map(|u| format!("calcom_booking:{u}")).collect();
    keys.sort();
    keys.dedup();
    let stmt = db
        .prepare_cached("select pg_advisory_xact_lock(hashtextextended(k, 0)) from unnest($1::text[]) with ordinality as t (k, n) order by n")
        .await
        .context("preparing the booking lock")?;
    db.execute(&stmt, &[&keys])
        .await
        .context("locking the booking")?;
    Ok(())
}

/// Finds or creates each attendee's contact by e-mail; ids in the attendees' order.
/// New contacts are routed (`crm::routing`).
/// A name already on the contact is kept; the time zone follows the latest booking.
pub async fn upsert_contacts(
    db: &impl GenericClient,
    attendees: &[Attendee],
) -> anyhow::Result<Vec<Uuid>> {
    let emails: Vec<&str> = attendees.iter().map(|a| a.email.as_str()).collect();
    let names: Vec<Option<&str>> = attendees.iter().map(|a| a.name.as_deref()).collect();
    let zones: Vec<Option<&str>> = attendees.iter().map(|a| a.time_zone.as_deref()).collect();
    let stmt = db
        .prepare_cached(
            // Sorted by e-mail so concurrent bookings sharing attendees lock contacts in one order.
            "insert into contacts as c (email, full_name, time_zone, source) \
             select e, n, z, 'calcom' from unnest($1::text[], $2::text[], $3::text[]) as a (e, n, z) order by e \
             on conflict (email) do update \
             set full_name = coalesce(c.full_name, excluded.full_name), \
                 time_zone = coalesce(excluded.time_zone, c.time_zone), \
                 updated_at = now() \
             returning email, id, (xmax = 0)",
        )
        .await
        .context("preparing the contact upsert")?;
    let rows = db
        .query(&stmt, &[&emails, &names, &zones])
        .await
        .context("upserting contacts by e-mail")?;
    // Contacts this booking created (xmax = 0: inserted, not updated) get
    // their owner from the Cal.com lead routing rule.
    for row in rows.iter().filter(|r| r.get::<_, bool>(2)) {
        crate::crm::routing::route_new_contact(db, row.get(1), crate::crm::routing::Source::Calcom)
            .await?;
    }
    emails
        .iter()
        .map(|e| {
            rows.iter()
                .find(|r| r.get::<_, &str>(0) == *e)
                .map(|r| r.get::<_, Uuid>(1))
                .context("an upserted contact was not returned")
        })
        .collect()
}

/// A deal as the flow needs it, locked for the transaction.
#[derive(Debug, Clone)]
pub struct Deal {
    pub id: Uuid,
    pub stage_id: Uuid,
    pub stage_name: String,
    pub position: i32,
    pub kind: String,
    /// The deal's pipeline's Meeting Scheduled stage and its position, when it has one.
    pub meeting_stage: Option<(Uuid, i32)>,
}

const DEAL_COLUMNS: &str = "d.id, d.stage_id, s.name, s.position, s.kind, ms.id, ms.position \
     from deals d join pipeline_stages s on s.id = d.stage_id \
     left join pipeline_stages ms on ms.pipeline_id = d.pipeline_id and ms.name = 'Meeting Scheduled'";

fn deal_from(row: &tokio_postgres::Row) -> Deal {
    let ms: Option<Uuid> = row.get(5);
    Deal {
        id: row.get(0),
        stage_id: row.get(1),
        stage_name: row.get(2),
        position: row.get(3),
        kind: row.get(4),
        meeting_stage: ms.map(|id| (id, row.get(6))),
    }
}

pub async fn lock_deal(db: &impl GenericClient, deal_id: Uuid) -> anyhow::Result<Option<Deal>> {
    // Lock, then read in a second statement: a locking statement that waited
    // re-checks only the locked row, and its join to the old stage would drop
    // the deal (or report a stale stage) after a concurrent move.
    let lock = db
        .prepare_cached("select 1 from deals where id = $1 for update")
        .await
        .context("preparing the deal lock")?;
    if db
        .query_opt(&lock, &[&deal_id])
        .await
        .context("locking the deal")?
        .is_none()
    {
        return Ok(None);
    }
    let stmt = db
        .prepare_cached(&format!("select {DEAL_COLUMNS} where d.id = $1"))
        .await
        .context("preparing the deal read")?;
    let row = db
        .query_opt(&stmt, &[&deal_id])
        .await
        .context("reading the deal")?;
    Ok(row.as_ref().map(deal_from))
}

/// The contact's open deal in the pipeline, locked; `None` when there is none.
pub async fn open_deal(
    db: &impl GenericClient,
    contact_id: Uuid,
    pipeline_id: Uuid,
) -> anyhow::Result<Option<Deal>> {
    let stmt = db
        .prepare_cached(
            "select id from deals where contact_id = $1 and pipeline_id = $2 and status = 'open' for update",
        )
        .await
        .context("preparing the open deal lookup")?;
    let row = db
        .query_opt(&stmt, &[&contact_id, &pipeline_id])
        .await
        .context("looking up the open deal")?;
    match row {
        Some(r) => lock_deal(db, r.get(0)).await,
        None => Ok(None),
    }
}

/// The open deal, created in the pipeline's entry stage (with its first history row) when there is none.
/// A concurrent creator wins the one-open-deal index; this call then locks that deal.
pub async fn find_or_create_deal(
    db: &impl GenericClient,
    contact_id: Uuid,
    pipeline: &DefaultPipeline,
    title: &str,
    event_id: Uuid,
) -> anyhow::Result<Deal> {
    let insert = db
        .prepare_cached(
            "insert into deals (contact_id, pipeline_id, stage_id, title, source) values ($1, $2, $3, $4, 'calcom') \
             on conflict (contact_id, pipeline_id) where status = 'open' do nothing returning id",
        )
        .await
        .context("preparing the deal insert")?;
    let history = db
        .prepare_cached(
            "insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor, source_event_id) \
             values ($1, null, $2, $3, $4)",
        )
        .await
        .context("preparing the first stage history row")?;
    for _ in 0..2 {
        if let Some(deal) = open_deal(db, contact_id, pipeline.id).await? {
            return Ok(deal);
        }
        let created = db
            .query_opt(
                &insert,
                &[&contact_id, &pipeline.id, &pipeline.entry_stage, &title],
            )
            .await
            .context("creating the deal")?;
        if let Some(row) = created {
            let deal_id: Uuid = row.get(0);
            db.execute(
                &history,
                &[&deal_id, &pipeline.entry_stage, &ACTOR, &event_id],
            )
            .await
            .context("recording the new deal's stage")?;
            return lock_deal(db, deal_id)
                .await?
                .context("the new deal vanished");
        }
    }
    anyhow::bail!("the open deal of contact {contact_id} vanished twice")
}

/// A `calcom_bookings` row.
#[derive(Debug, Clone)]
pub struct BookingRow {
    pub uid: String,
    pub contact_id: Uuid,
    pub attendee_contact_ids: Vec<Uuid>,
    pub deal_id: Option<Uuid>,
    pub meeting_activity_id: Option<Uuid>,
    pub stage_before_id: Option<Uuid>,
    pub status: String,
}

pub async fn find_booking(
    db: &impl GenericClient,
    uid: &str,
) -> anyhow::Result<Option<BookingRow>> {
    let stmt = db
        .prepare_cached(
            "select uid, contact_id, attendee_contact_ids, deal_id, meeting_activity_id, stage_before_id, status \
             from calcom_bookings where uid = $1",
        )
        .await
        .context("preparing the booking lookup")?;
    let row = db
        .query_opt(&stmt, &[&uid])
        .await
        .context("looking up the booking")?;
    Ok(row.map(|r| BookingRow {
        uid: r.get(0),
        contact_id: r.get(1),
        attendee_contact_ids: r.get(2),
        deal_id: r.get(3),
        meeting_activity_id: r.get(4),
        stage_before_id: r.get(5),
        status: r.get(6),
    }))
}

/// What a booking row records about one Cal.com booking.
pub struct NewBooking<'a> {
    pub uid: &'a str,
    pub booking_id: Option<i64>,
    pub row: &'a BookingRow,
    pub title: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rescheduled_from_uid: Option<&'a str>,
    pub cancellation_reason: Option<&'a str>,
    pub event_id: Uuid,
}

/// Inserts the row, or refreshes it when the uid is known (a replay under another key).
pub async fn save_booking(db: &impl GenericClient, b: &NewBooking<'_>) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into calcom_bookings as cb (uid, calcom_booking_id, contact_id, attendee_contact_ids, deal_id, \
               meeting_activity_id, stage_before_id, status, title, start_time, end_time, rescheduled_from_uid, \
               cancellation_reason, cancelled_at, last_event_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, case when $8 = 'cancelled' then now() end, $14) \
             on conflict (uid) do update \
             set calcom_booking_id = coalesce(excluded.calcom_booking_id, cb.calcom_booking_id), \
                 attendee_contact_ids = excluded.attendee_contact_ids, deal_id = excluded.deal_id, \
                 meeting_activity_id = excluded.meeting_activity_id, stage_before_id = excluded.stage_before_id, \
                 status = excluded.status, title = excluded.title, start_time = excluded.start_time, \
                 end_time = excluded.end_time, \
                 rescheduled_from_uid = coalesce(excluded.rescheduled_from_uid, cb.rescheduled_from_uid), \
                 cancellation_reason = excluded.cancellation_reason, \
                 cancelled_at = case when excluded.status = 'cancelled' then coalesce(cb.cancelled_at, now()) end, \
                 last_event_id = excluded.last_event_id, updated_at = now()",
        )
        .await
        .context("preparing the booking save")?;
    let r = b.row;
    db.execute(
        &stmt,
        &[
            &b.uid,
            &b.booking_id,
            &r.contact_id,
            &r.attendee_contact_ids,
            &r.deal_id,
            &r.meeting_activity_id,
            &r.stage_before_id,
            &r.status,
            &b.title,
            &b.start,
            &b.end,
            &b.rescheduled_from_uid,
            &b.cancellation_reason,
            &b.event_id,
        ],
    )
    .await
    .context("saving the booking")?;
    Ok(())
}

/// The original booking of a reschedule: replaced by `new_uid`, its meeting now the new one's.
pub async fn mark_rescheduled(
    db: &impl GenericClient,
    old_uid: &str,
    new_uid: &str,
    event_id: Uuid,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update calcom_bookings set status = 'rescheduled', rescheduled_to_uid = $2, cancelled_at = null, \
             last_event_id = $3, updated_at = now() where uid = $1",
        )
        .await
        .context("preparing the reschedule mark")?;
    db.execute(&stmt, &[&old_uid, &new_uid, &event_id])
        .await
        .context("marking the original booking rescheduled")?;
    Ok(())
}

/// The stage a deal held before the bookings still standing on it took it to Meeting Scheduled.
pub async fn standing_stage_before(
    db: &impl GenericClient,
    deal_id: Uuid,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached(
            "select stage_before_id from calcom_bookings where deal_id = $1 and status = 'scheduled' \
             and stage_before_id is not null order by created_at limit 1",
        )
        .await
        .context("preparing the standing booking lookup")?;
    let row = db
        .query_opt(&stmt, &[&deal_id])
        .await
        .context("looking up standing bookings")?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn has_scheduled_booking(db: &impl GenericClient, deal_id: Uuid) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached("select exists (select 1 from calcom_bookings where deal_id = $1 and status = 'scheduled')")
        .await
        .context("preparing the scheduled booking check")?;
    Ok(db
        .query_one(&stmt, &[&deal_id])
        .await
        .context("checking for scheduled bookings")?
        .get(0))
}

/// A timeline entry written by the Cal.com flow (actor `calcom`).
pub struct NewActivity<'a> {
    /// `meeting`, or `system` for the cancellation log.
    pub kind: &'a str,
    pub contact_id: Uuid,
    pub deal_id: Option<Uuid>,
    pub body: &'a str,
    pub metadata: &'a Value,
    /// Where it sits on the timeline: a meeting at its start time.
    pub occurred_at: DateTime<Utc>,
}

pub async fn insert_activity(
    db: &impl GenericClient,
    a: &NewActivity<'_>,
    event_id: Uuid,
) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached(
            "insert into activities (type, contact_id, deal_id, body, metadata, actor, source_event_id, occurred_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
        )
        .await
        .context("preparing the activity insert")?;
    Ok(db
        .query_one(
            &stmt,
            &[
                &a.kind,
                &a.contact_id,
                &a.deal_id,
                &a.body,
                a.metadata,
                &ACTOR,
                &event_id,
                &a.occurred_at,
            ],
        )
        .await
        .context("writing the activity")?
        .get(0))
}

/// Rewrites the meeting in place: body, time, and metadata merged over the old
/// (each uid the meeting went by is kept in `booking_uids`).
pub async fn update_meeting(
    db: &impl GenericClient,
    activity_id: Uuid,
    body: &str,
    metadata: &Value,
    occurred_at: DateTime<Utc>,
    uid: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update activities set body = $2, occurred_at = $4, \
             metadata = jsonb_set(metadata || $3, '{booking_uids}', \
               case when coalesce(metadata -> 'booking_uids', '[]') ? $5 then coalesce(metadata -> 'booking_uids', '[]') \
                    else coalesce(metadata -> 'booking_uids', '[]') || to_jsonb($5::text) end) \
             where id = $1 and type = 'meeting'",
        )
        .await
        .context("preparing the meeting update")?;
    db.execute(&stmt, &[&activity_id, &body, metadata, &occurred_at, &uid])
        .await
        .context("updating the meeting")?;
    Ok(())
}
