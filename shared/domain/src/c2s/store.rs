//! SQL of the C2S webhook: the per-element ingest (`c2s_ingest`, one
//! statement, migrations/V16), element rejections, and the stats query.

use super::payload::{LeadEvent, rfc3339_utc};
use crate::{
    crm::ApiError,
    db::GenericClient,
    jobs::{EnrichLead, EnrichmentJob},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// What the ingest of one element did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingest {
    /// Recorded (`received`), lead upserted (unless `lead_updated` is false:
    /// an older `updated_at` than stored), one enrichment job in the outbox.
    Accepted {
        event_id: Uuid,
        lead_updated: bool,
        outbox_message_id: Uuid,
    },
    /// The key was seen with the same payload; nothing written.
    Duplicate { event_id: Uuid, status: String },
    /// The key was seen with another payload; nothing written.
    Conflict { event_id: Uuid },
}

/// The enrichment job of an element, as the ingest writes it to the outbox.
/// Its `event_id` is a placeholder the SQL replaces with the event's id.
pub fn job_template(ev: &LeadEvent) -> Value {
    let job = EnrichmentJob::EnrichLead(EnrichLead {
        v: 1,
        event_id: Uuid::nil(),
        lead_id: ev.lead_id.clone(),
        hook_action: ev.hook_action.as_str().to_string(),
    });
    serde_json::to_value(&job).expect("jobs always serialise")
}

/// The parameters of `c2s_ingest`.
pub fn ingest_params(ev: &LeadEvent, key: &str) -> Value {
    let l = &ev.lead;
    json!({
        "idempotency_key": key,
        "payload_hash": ev.payload_hash().as_str(),
        "hook_action": ev.hook_action.as_str(),
        "lead_id": ev.lead_id,
        "lead": {
            "customer_name": l.customer_name,
            "customer_email": l.customer_email,
            "customer_phone": l.customer_phone,
            "customer_phone2": l.customer_phone2,
            "customer_phone_global": l.customer_phone_global,
            "seller_id": l.seller_id,
            "seller_name": l.seller_name,
            "seller_email": l.seller_email,
            "seller_phone": l.seller_phone,
            "product_description": l.product_description,
            "prop_ref": l.prop_ref,
            "price_cents": l.price_cents,
            "city": l.city,
            "neighbourhood": l.neighbourhood,
            "status_alias": l.status_alias,
            "status_name": l.status_name,
            "lead_source": l.lead_source,
            "channel": l.channel,
            "done_details": l.done_details,
            "archive_details": l.archive_details,
            "c2s_created_at": l.created_at.map(rfc3339_utc),
            "c2s_updated_at": l.updated_at.map(rfc3339_utc),
            "contact_hash": ev.contact_hash(),
            "attributes": ev.attributes,
        },
    })
}

/// One round trip: claim the key, upsert the lead forward-only, enqueue the
/// enrichment job — one statement, so all of it commits or none.
pub async fn ingest(db: &impl GenericClient, ev: &LeadEvent, key: &str) -> anyhow::Result<Ingest> {
    let stmt = db
        .prepare_cached("select c2s_ingest($1, $2, $3)")
        .await
        .context("preparing the C2S ingest")?;
    let row = db
        .query_one(
            &stmt,
            &[&ingest_params(ev, key), &ev.canonical(), &job_template(ev)],
        )
        .await
        .context("running the C2S ingest")?;
    let out: Value = row.get(0);
    let id = |k: &str| {
        out[k]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .with_context(|| format!("c2s_ingest answered without {k}"))
    };
    Ok(match out["outcome"].as_str() {
        Some("accepted") => Ingest::Accepted {
            event_id: id("event_id")?,
            lead_updated: out["lead_updated"].as_bool().unwrap_or(false),
            outbox_message_id: id("outbox_message_id")?,
        },
        Some("duplicate") => Ingest::Duplicate {
            event_id: id("event_id")?,
            status: out["status"].as_str().unwrap_or("received").to_string(),
        },
        Some("mismatch") => Ingest::Conflict {
            event_id: id("event_id")?,
        },
        other => anyhow::bail!("unknown c2s_ingest outcome {other:?}"),
    })
}

/// An element refused on its own (the rest of the call goes on): a
/// `rejected` receipt that holds no key, with the lead id when known.
pub struct ElementRejection<'a> {
    pub lead_id: Option<&'a str>,
    pub hook_action: Option<&'a str>,
    pub offered_key: Option<&'a str>,
    pub payload_hash: &'a str,
    pub error_code: &'a str,
    pub error: &'a str,
}

pub async fn record_rejection(
    db: &impl GenericClient,
    r: &ElementRejection<'_>,
) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached(
            "insert into webhook_events (source, offered_key, payload_hash, event_type, subject_id, \
             status, http_status, error_code, error, processed_at, duration_ms) \
             values ('c2s', $1, $2, $3, $4, 'rejected', 422, $5, $6, now(), 0) returning id",
        )
        .await
        .context("preparing the C2S element rejection")?;
    let row = db
        .query_one(
            &stmt,
            &[
                &r.offered_key,
                &r.payload_hash,
                &r.hook_action,
                &r.lead_id,
                &r.error_code,
                &r.error,
            ],
        )
        .await
        .context("recording a rejected C2S element")?;
    Ok(row.get(0))
}

/// An accepted element whose ingest failed on our side: `failed` under its
/// key, so C2S's retry (or a replay) claims it again.
pub async fn record_failure(
    db: &impl GenericClient,
    ev: &LeadEvent,
    key: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "select webhook_fail('c2s', $1, $2, $3, $4, 'internal_error', \
             'processing failed; the same element is processed again when re-sent')",
        )
        .await
        .context("preparing the C2S failure record")?;
    db.query_one(
        &stmt,
        &[
            &key,
            &ev.payload_hash().as_str(),
            &ev.hook_action.as_str(),
            &ev.canonical(),
        ],
    )
    .await
    .context("recording a failed C2S element")?;
    Ok(())
}

/// The stats window: default and maximum, in days.
pub const STATS_DEFAULT_DAYS: i64 = 7;
pub const STATS_MAX_DAYS: i64 = 90;

/// Per UTC day × hook action over the last `days` days (today included):
/// accepted events by status, the success rate and the median processing
/// time (`processed_at − received_at` of finished events).
pub async fn stats(db: &impl GenericClient, days: i32) -> Result<Value, ApiError> {
    let rows = db
        .query(
            "with w as (select (date_trunc('day', now() at time zone 'UTC') \
                                - make_interval(days => $1 - 1)) at time zone 'UTC' as since) \
             select to_char(received_at at time zone 'UTC', 'YYYY-MM-DD') as day, \
                    coalesce(event_type, '') as hook_action, \
                    count(*) as total, \
                    count(*) filter (where status = 'received') as received, \
                    count(*) filter (where status = 'completed') as completed, \
                    count(*) filter (where status = 'partial') as partial, \
                    count(*) filter (where status = 'failed') as failed, \
                    count(*) filter (where status = 'skipped') as skipped, \
                    percentile_cont(0.5) within group \
                        (order by extract(epoch from processed_at - received_at) * 1000) \
                        filter (where status in ('completed', 'partial', 'failed', 'skipped') \
                                  and processed_at is not null) as median_ms \
             from webhook_events, w \
             where source = 'c2s' and status <> 'rejected' and received_at >= w.since \
             group by 1, 2 order by 1, 2",
            &[&days],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "computing the C2S webhook stats"))?;
    let window = db
        .query_one(
            "with w as (select (date_trunc('day', now() at time zone 'UTC') \
                                - make_interval(days => $1 - 1)) at time zone 'UTC' as since) \
             select w.since, now(), \
                    (select count(*) from webhook_events \
                     where source = 'c2s' and status = 'rejected' and received_at >= w.since) \
             from w",
            &[&days],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the C2S stats window"))?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let count = |i: usize| r.get::<_, i64>(i);
            let (completed, partial, failed) = (count(4), count(5), count(6));
            json!({
                "day": r.get::<_, String>(0),
                "hook_action": r.get::<_, String>(1),
                "total": count(2),
                "received": count(3),
                "completed": completed,
                "partial": partial,
                "failed": failed,
                "skipped": count(7),
                "success_rate": success_rate(completed, partial, failed),
                "median_processing_ms": r.get::<_, Option<f64>>(8).map(|ms| ms.round() as i64),
            })
        })
        .collect();
    Ok(json!({
        "days": days,
        "since": window.get::<_, DateTime<Utc>>(0),
        "until": window.get::<_, DateTime<Utc>>(1),
        "rows": rows,
        "rejected": window.get::<_, i64>(2),
    }))
}

/// Completed ÷ (completed + partial + failed), in percent with one decimal:
/// of the events the worker attempted, the share fully done (skipped had
/// nothing to do; received is not finished). `None` when none was attempted.
pub fn success_rate(completed: i64, partial: i64, failed: i64) -> Option<f64> {
    let attempted = completed + partial + failed;
    (attempted > 0).then(|| (1000.0 * completed as f64 / attempted as f64).round() / 10.0)
}
