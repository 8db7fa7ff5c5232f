//! Campaigns: drafts, the state changes (send, pause, resume, cancel) and
//! the ledger pages. State changes lock the campaign row, check the state
//! they move from, write the audit entry and (send, resume) the
//! `run_campaign` job in the same transaction.
//!
//! States: draft → queued (send) → sending (snapshot taken, by the runner) →
//! finished (runner); queued | sending → paused; paused → sending (or queued
//! when no snapshot was taken yet); any but finished/cancelled → cancelled,
//! and the rows still `queued` become `cancelled` in the same statement.

use super::{CHANNELS, db_err, decode_cursor, decode_id_cursor, encode_cursor, encode_id_cursor};
use crate::{
    auth::Principal,
    campaigns::{
        audience,
        audit::{self, AuditEntry},
        template,
    },
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
    jobs::{self, CampaignJob, RunCampaign},
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use tokio_postgres::Row;
use uuid::Uuid;

pub const STATUSES: &[&str] = &[
    "draft",
    "queued",
    "sending",
    "paused",
    "cancelled",
    "finished",
];
pub const DELIVERY_STATUSES: &[&str] = &[
    "queued",
    "sending",
    "sent",
    "delivered",
    "failed",
    "skipped",
    "cancelled",
];

const COLUMNS: &str = "id, name, channel, segment_id, template_id, status, pause_reason, created_by, recipients, \
     snapshot_at, queued_at, finished_at, cancelled_at, created_at, updated_at";

fn campaign_json(r: &Row, counts: Option<&Map<String, Value>>) -> Value {
    let mut all = Map::new();
    for s in DELIVERY_STATUSES {
        all.insert(
            (*s).to_string(),
            counts.and_then(|c| c.get(*s)).cloned().unwrap_or(json!(0)),
        );
    }
    json!({
        "id": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "channel": r.get::<_, String>(2),
        "segment_id": r.get::<_, Uuid>(3),
        "template_id": r.get::<_, Uuid>(4),
        "status": r.get::<_, String>(5),
        "pause_reason": r.get::<_, Option<String>>(6),
        "created_by": r.get::<_, String>(7),
        "recipients": r.get::<_, Option<i32>>(8),
        "snapshot_at": r.get::<_, Option<DateTime<Utc>>>(9),
        "queued_at": r.get::<_, Option<DateTime<Utc>>>(10),
        "finished_at": r.get::<_, Option<DateTime<Utc>>>(11),
        "cancelled_at": r.get::<_, Option<DateTime<Utc>>>(12),
        "created_at": r.get::<_, DateTime<Utc>>(13),
        "updated_at": r.get::<_, DateTime<Utc>>(14),
        "counts": all,
    })
}

/// Per-status ledger counts of the given campaigns.
async fn counts(
    db: &impl GenericClient,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Map<String, Value>>, ApiError> {
    let ids = ids.to_vec();
    let rows = db
        .query(
            "select campaign_id, status, count(*) from campaign_deliveries \
             where campaign_id = any($1) group by campaign_id, status",
            &[&ids],
        )
        .await
        .map_err(|e| db_err(e, "counting deliveries"))?;
    let mut out: HashMap<Uuid, Map<String, Value>> = HashMap::new();
    for r in rows {
        out.entry(r.get(0))
            .or_default()
            .insert(r.get(1), json!(r.get::<_, i64>(2)));
    }
    Ok(out)
}

async fn row(db: &impl GenericClient, id: Uuid, lock: bool) -> Result<Row, ApiError> {
    let sql = format!(
        "select {COLUMNS} from campaigns where id = $1{}",
        if lock { " for update" } else { "" }
    );
    db.query_opt(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "reading a campaign"))?
        .ok_or(ApiError::NotFound("campaign"))
}

async fn with_counts(db: &impl GenericClient, r: &Row) -> Result<Value, ApiError> {
    let id: Uuid = r.get(0);
    let c = counts(db, &[id]).await?;
    Ok(campaign_json(r, c.get(&id)))
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Value, ApiError> {
    let r = row(db, id, false).await?;
    with_counts(db, &r).await
}

/// Newest first, keyset pages on `(created_at, id)`; optional status filter.
pub async fn list(
    db: &impl GenericClient,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Value, ApiError> {
    if let Some(s) = status
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::validation(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let after = cursor.map(|c| decode_cursor("k1", c)).transpose()?;
    let (at, after_id) = (after.map(|a| a.0), after.map(|a| a.1));
    let sql = format!(
        "select {COLUMNS} from campaigns where ($1::text is null or status = $1) \
         and ($2::timestamptz is null or (created_at, id) < ($2, $3)) \
         order by created_at desc, id desc limit $4"
    );
    let rows = db
        .query(sql.as_str(), &[&status, &at, &after_id, &(limit + 1)])
        .await
        .map_err(|e| db_err(e, "listing campaigns"))?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let c = counts(db, &ids).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| campaign_json(r, c.get(&r.get::<_, Uuid>(0))))
        .collect();
    let next = if more {
        rows.last()
            .map(|r| encode_cursor("k1", r.get(13), r.get(0)))
    } else {
        None
    };
    Ok(json!({"items": items, "next_cursor": next}))
}

/// A draft's fields after validation (create, or a patch merged onto the stored draft).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignFields {
    pub name: String,
    pub channel: String,
    pub segment_id: Uuid,
    pub template_id: Uuid,
}

impl CampaignFields {
    pub fn parse(
        body: Map<String, Value>,
        base: Option<&CampaignFields>,
    ) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["name", "channel", "segment_id", "template_id"])?;
        let name = match (f.text("name", 200)?, base) {
            (Patch::Set(v), _) => v,
            (Patch::Absent, Some(b)) => b.name.clone(),
            _ => return Err(ApiError::validation("name", "is required")),
        };
        let channel = match (f.text("channel", 20)?, base) {
            (Patch::Set(v), _) => v,
            (Patch::Absent, Some(b)) => b.channel.clone(),
            _ => return Err(ApiError::validation("channel", "is required")),
        };
        if !CHANNELS.contains(&channel.as_str()) {
            return Err(ApiError::validation(
                "channel",
                format!("must be one of {}", CHANNELS.join(", ")),
            ));
        }
        let id = |patch: Patch<Uuid>, name: &str, old: Option<Uuid>| match (patch, old) {
            (Patch::Set(v), _) => Ok(v),
            (Patch::Absent, Some(o)) => Ok(o),
            _ => Err(ApiError::validation(name, "is required")),
        };
        Ok(Self {
            name,
            channel,
            segment_id: id(
                f.uuid("segment_id")?,
                "segment_id",
                base.map(|b| b.segment_id),
            )?,
            template_id: id(
                f.uuid("template_id")?,
                "template_id",
                base.map(|b| b.template_id),
            )?,
        })
    }
}

/// Real ids, an enabled channel, a template of that channel.
async fn check_references(db: &impl GenericClient, f: &CampaignFields) -> Result<(), ApiError> {
    let r = db
        .query_one(
            "select (select enabled from channels where name = $1), \
                    exists (select 1 from segments where id = $2), \
                    (select channel from message_templates where id = $3)",
            &[&f.channel, &f.segment_id, &f.template_id],
        )
        .await
        .map_err(|e| db_err(e, "checking the campaign's references"))?;
    if r.get::<_, Option<bool>>(0) != Some(true) {
        return Err(ApiError::validation("channel", "is not enabled"));
    }
    if !r.get::<_, bool>(1) {
        return Err(ApiError::validation("segment_id", "does not exist"));
    }
    match r.get::<_, Option<String>>(2) {
        None => Err(ApiError::validation("template_id", "does not exist")),
        Some(c) if c != f.channel => Err(ApiError::validation(
            "template_id",
            format!("is a {c} template, not {}", f.channel),
        )),
        Some(_) => Ok(()),
    }
}

fn refs(f: &CampaignFields) -> Value {
    json!({"channel": f.channel, "segment_id": f.segment_id, "template_id": f.template_id})
}

pub async fn create(
    db: &impl GenericClient,
    who: &Principal,
    f: CampaignFields,
) -> Result<Done, ApiError> {
    check_references(db, &f).await?;
    let sql = format!(
        "insert into campaigns (name, channel, segment_id, template_id, created_by) \
         values ($1, $2, $3, $4, $5) returning {COLUMNS}"
    );
    let r = db
        .query_one(
            sql.as_str(),
            &[
                &f.name,
                &f.channel,
                &f.segment_id,
                &f.template_id,
                &who.actor(),
            ],
        )
        .await
        .map_err(|e| db_err(e, "creating a campaign"))?;
    let id: Uuid = r.get(0);
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.created",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details: refs(&f),
        },
    )
    .await?;
    Ok(Done::new(201, campaign_json(&r, None)))
}

fn not_in_state(what: &str, status: &str) -> ApiError {
    ApiError::Refused {
        code: "invalid_state",
        message: format!("Only {what} campaigns can do this; this one is {status}"),
    }
}

pub async fn update(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    body: Map<String, Value>,
) -> Result<Done, ApiError> {
    let r = row(db, id, true).await?;
    let status: String = r.get(5);
    if status != "draft" {
        return Err(not_in_state("draft", &status));
    }
    let base = CampaignFields {
        name: r.get(1),
        channel: r.get(2),
        segment_id: r.get(3),
        template_id: r.get(4),
    };
    let f = CampaignFields::parse(body, Some(&base))?;
    check_references(db, &f).await?;
    let sql = format!(
        "update campaigns set name = $2, channel = $3, segment_id = $4, template_id = $5, updated_at = now() \
         where id = $1 returning {COLUMNS}"
    );
    let r = db
        .query_one(
            sql.as_str(),
            &[&id, &f.name, &f.channel, &f.segment_id, &f.template_id],
        )
        .await
        .map_err(|e| db_err(e, "updating a campaign"))?;
    let mut changed = Vec::new();
    for (field, differs) in [
        ("name", f.name != base.name),
        ("channel", f.channel != base.channel),
        ("segment_id", f.segment_id != base.segment_id),
        ("template_id", f.template_id != base.template_id),
    ] {
        if differs {
            changed.push(field);
        }
    }
    let mut details = refs(&f);
    details["fields"] = json!(changed);
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.updated",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details,
        },
    )
    .await?;
    Ok(Done::new(200, campaign_json(&r, None)))
}

/// POST {id}/send?dry_run=true: the recipients a send would have now.
/// POST {id}/send?dry_run=true: whole-audience counts, samples of contacts
/// the caller may read only.
pub async fn dry_run(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<Value, ApiError> {
    let r = row(db, id, false).await?;
    let d = audience::dry_run_for(db, id, who.owner_scope()).await?;
    Ok(json!({
        "campaign_id": id,
        "status": r.get::<_, String>(5),
        "dry_run": true,
        "recipients": d.recipients,
        "queued": d.queued,
        "suppressed": d.skipped,
        "suppressed_total": d.recipients - d.queued,
        "samples": d.samples,
    }))
}

async fn enqueue_run(db: &impl GenericClient, id: Uuid) -> Result<Uuid, ApiError> {
    Ok(jobs::enqueue_campaign(
        db,
        &CampaignJob::RunCampaign(RunCampaign {
            v: 1,
            campaign_id: id,
        }),
    )
    .await?)
}

/// The channel is enabled and the template usable (approved, same channel,
/// renderable variables) — checked again at send, since both can change after the draft.
async fn check_sendable(db: &impl GenericClient, r: &Row) -> Result<(), ApiError> {
    let channel: String = r.get(2);
    let template_id: Uuid = r.get(4);
    let t = db
        .query_one(
            "select (select enabled from channels where name = $1), t.channel, t.status, t.body, t.subject, t.variables \
             from message_templates t where t.id = $2",
            &[&channel, &template_id],
        )
        .await
        .map_err(|e| db_err(e, "checking the campaign can be sent"))?;
    if t.get::<_, Option<bool>>(0) != Some(true) {
        return Err(ApiError::Refused {
            code: "channel_disabled",
            message: format!("The {channel} channel is not enabled"),
        });
    }
    let unusable = |why: String| ApiError::Refused {
        code: "template_not_usable",
        message: why,
    };
    if t.get::<_, String>(1) != channel {
        return Err(unusable("The template is for another channel".into()));
    }
    let status: String = t.get(2);
    if status != "approved" {
        return Err(unusable(format!("The template is {status}, not approved")));
    }
    let body: String = t.get(3);
    let subject: Option<String> = t.get(4);
    let variables: Vec<String> = match t.get::<_, Value>(5) {
        Value::Array(items) => items
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    let mut texts = vec![body.as_str()];
    if let Some(s) = &subject {
        texts.push(s);
    }
    template::required_names(&texts, &variables)
        .map_err(|e| unusable(format!("The template cannot be rendered: {e}")))?;
    Ok(())
}

/// POST {id}/send: draft → queued, audited, `run_campaign` enqueued (202).
pub async fn send(db: &impl GenericClient, who: &Principal, id: Uuid) -> Result<Done, ApiError> {
    let r = row(db, id, true).await?;
    let status: String = r.get(5);
    if status != "draft" {
        return Err(not_in_state("draft", &status));
    }
    check_sendable(db, &r).await?;
    let sql = format!(
        "update campaigns set status = 'queued', queued_at = now(), updated_at = now() where id = $1 \
         returning {COLUMNS}"
    );
    let r = db
        .query_one(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "queueing a campaign"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.sent",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details: json!({"channel": r.get::<_, String>(2), "segment_id": r.get::<_, Uuid>(3),
                            "template_id": r.get::<_, Uuid>(4)}),
        },
    )
    .await?;
    let job = enqueue_run(db, id).await?;
    let mut done = Done::new(202, campaign_json(&r, None));
    done.enqueued.push(job);
    Ok(done)
}

/// POST {id}/pause: queued | sending → paused ("paused by <actor>").
pub async fn pause(db: &impl GenericClient, who: &Principal, id: Uuid) -> Result<Done, ApiError> {
    let r = row(db, id, true).await?;
    let status: String = r.get(5);
    if status != "queued" && status != "sending" {
        return Err(not_in_state("queued or sending", &status));
    }
    let reason = format!("paused by {}", who.actor());
    let sql = format!(
        "update campaigns set status = 'paused', pause_reason = left($2, 500), updated_at = now() where id = $1 \
         returning {COLUMNS}"
    );
    let r = db
        .query_one(sql.as_str(), &[&id, &reason])
        .await
        .map_err(|e| db_err(e, "pausing a campaign"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.paused",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details: json!({"from": status}),
        },
    )
    .await?;
    Ok(Done::new(200, with_counts(db, &r).await?))
}

/// POST {id}/resume: paused → sending (queued when no snapshot yet), runner
/// enqueued. `resumed_at` is set: the error threshold counts only outcomes
/// after it, so the failures that paused the campaign do not pause it again.
pub async fn resume(db: &impl GenericClient, who: &Principal, id: Uuid) -> Result<Done, ApiError> {
    let r = row(db, id, true).await?;
    let status: String = r.get(5);
    if status != "paused" {
        return Err(not_in_state("paused", &status));
    }
    let sql = format!(
        "update campaigns set status = case when snapshot_at is null then 'queued' else 'sending' end, \
             pause_reason = null, resumed_at = now(), updated_at = now() where id = $1 returning {COLUMNS}"
    );
    let r = db
        .query_one(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "resuming a campaign"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.resumed",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details: json!({"to": r.get::<_, String>(5)}),
        },
    )
    .await?;
    let job = enqueue_run(db, id).await?;
    let mut done = Done::new(200, with_counts(db, &r).await?);
    done.enqueued.push(job);
    Ok(done)
}

/// POST {id}/cancel: any but finished/cancelled → cancelled; queued rows,
/// and `sending` rows the send worker never attempted (no `attempted_at`, no
/// outbound message), → cancelled. An attempted row stays for its result.
pub async fn cancel(db: &impl GenericClient, who: &Principal, id: Uuid) -> Result<Done, ApiError> {
    let r = row(db, id, true).await?;
    let status: String = r.get(5);
    if status == "finished" || status == "cancelled" {
        return Err(not_in_state("unfinished", &status));
    }
    let sql = format!(
        "update campaigns set status = 'cancelled', cancelled_at = now(), pause_reason = null, \
             runner_lease_until = null, updated_at = now() where id = $1 returning {COLUMNS}"
    );
    let r = db
        .query_one(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "cancelling a campaign"))?;
    let rows = db
        .execute(
            "update campaign_deliveries set status = 'cancelled', updated_at = now() \
             where campaign_id = $1 and (status = 'queued' \
                   or (status = 'sending' and attempted_at is null and message_id is null))",
            &[&id],
        )
        .await
        .map_err(|e| db_err(e, "cancelling the queued deliveries"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.cancelled",
            actor: &who.actor(),
            target_type: "campaign",
            target_id: Some(id.to_string()),
            details: json!({"from": status, "deliveries_cancelled": rows}),
        },
    )
    .await?;
    Ok(Done::new(200, with_counts(db, &r).await?))
}

/// GET {id}/deliveries: the ledger by delivery id, optional status filter.
/// Rows carry ids, statuses, provider ids and error codes — no contact details.
pub async fn deliveries(
    db: &impl GenericClient,
    id: Uuid,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Value, ApiError> {
    if let Some(s) = status
        && !DELIVERY_STATUSES.contains(&s)
    {
        return Err(ApiError::validation(
            "status",
            format!("must be one of {}", DELIVERY_STATUSES.join(", ")),
        ));
    }
    let after = cursor.map(|c| decode_id_cursor("l1", c)).transpose()?;
    // 404 for an unknown campaign, not an empty page.
    row(db, id, false).await?;
    let rows = db
        .query(
            "select id, contact_id, status, skip_reason, message_id, provider_id, attempts, error_code, error, \
                    released_at, sent_at, delivered_at, failed_at, created_at, updated_at \
             from campaign_deliveries where campaign_id = $1 and ($2::text is null or status = $2) \
               and ($3::uuid is null or id > $3) order by id limit $4",
            &[&id, &status, &after, &(limit + 1)],
        )
        .await
        .map_err(|e| db_err(e, "reading deliveries"))?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let ts = |r: &Row, i: usize| r.get::<_, Option<DateTime<Utc>>>(i);
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, Uuid>(0),
                "contact_id": r.get::<_, Uuid>(1),
                "status": r.get::<_, String>(2),
                "skip_reason": r.get::<_, Option<String>>(3),
                "message_id": r.get::<_, Option<Uuid>>(4),
                "provider_id": r.get::<_, Option<String>>(5),
                "attempts": r.get::<_, i32>(6),
                "error_code": r.get::<_, Option<String>>(7),
                "error": r.get::<_, Option<String>>(8),
                "released_at": ts(r, 9),
                "sent_at": ts(r, 10),
                "delivered_at": ts(r, 11),
                "failed_at": ts(r, 12),
                "created_at": r.get::<_, DateTime<Utc>>(13),
                "updated_at": r.get::<_, DateTime<Utc>>(14),
            })
        })
        .collect();
    let next = if more {
        rows.last().map(|r| encode_id_cursor("l1", r.get(0)))
    } else {
        None
    };
    Ok(json!({"campaign_id": id, "items": items, "next_cursor": next}))
}

/// Campaigns a runner should pick up again (the module was switched back on).
pub async fn enqueue_active(db: &impl GenericClient) -> Result<Vec<Uuid>, ApiError> {
    let ids: Vec<Uuid> = db
        .query(
            "select id from campaigns where status in ('queued', 'sending') order by created_at",
            &[],
        )
        .await
        .map_err(|e| db_err(e, "listing active campaigns"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        jobs.push(enqueue_run(db, id).await?);
    }
    Ok(jobs)
}
