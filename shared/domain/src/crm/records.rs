//! How contacts, deals, pipelines and activities look on the wire: one
//! column list and one row → JSON mapping per record, shared by writes
//! (their responses) and reads. Timestamps are RFC 3339 in UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(ts(t)))
}

/// Columns of a contact, in the order `contact` reads them (alias `c`).
pub const CONTACT_COLUMNS: &str = "c.id, c.email, c.phone, c.full_name, c.first_name, c.last_name, \
     c.company, c.website, c.time_zone, c.owner_id, c.source, c.reply_status, c.reply_summary, \
     c.last_replied_at, c.is_unregistered, c.created_at, c.updated_at";

pub fn contact(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "email": row.get::<_, Option<String>>(1),
        "phone": row.get::<_, Option<String>>(2),
        "full_name": row.get::<_, Option<String>>(3),
        "first_name": row.get::<_, Option<String>>(4),
        "last_name": row.get::<_, Option<String>>(5),
        "company": row.get::<_, Option<String>>(6),
        "website": row.get::<_, Option<String>>(7),
        "time_zone": row.get::<_, Option<String>>(8),
        "owner_id": row.get::<_, Option<String>>(9),
        "source": row.get::<_, String>(10),
        "reply_status": row.get::<_, Option<String>>(11),
        "reply_summary": row.get::<_, Option<String>>(12),
        "last_replied_at": ts_opt(row.get(13)),
        "is_unregistered": row.get::<_, bool>(14),
        "created_at": ts(row.get(15)),
        "updated_at": ts(row.get(16)),
    })
}

/// Columns of a deal with its contact's card fields (alias `d`, contact `c`
/// joined): what a board card shows without a second request.
pub const DEAL_COLUMNS: &str = "d.id, d.contact_id, d.pipeline_id, d.stage_id, d.owner_id, d.title, \
     d.status, d.value_cents, d.currency, d.source, d.created_at, d.updated_at, d.closed_at, \
     c.full_name, c.email, c.company";

pub fn deal(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "contact_id": row.get::<_, Uuid>(1),
        "pipeline_id": row.get::<_, Uuid>(2),
        "stage_id": row.get::<_, Uuid>(3),
        "owner_id": row.get::<_, Option<String>>(4),
        "title": row.get::<_, String>(5),
        "status": row.get::<_, String>(6),
        "value_cents": row.get::<_, Option<i64>>(7),
        "currency": row.get::<_, Option<String>>(8),
        "source": row.get::<_, String>(9),
        "created_at": ts(row.get(10)),
        "updated_at": ts(row.get(11)),
        "closed_at": ts_opt(row.get(12)),
        "contact": {
            "id": row.get::<_, Uuid>(1),
            "full_name": row.get::<_, Option<String>>(13),
            "email": row.get::<_, Option<String>>(14),
            "company": row.get::<_, Option<String>>(15),
        },
    })
}

/// `d.created_at` of a deal row read with `DEAL_COLUMNS` (its page key).
pub fn deal_created_at(row: &Row) -> DateTime<Utc> {
    row.get(10)
}

/// `c.created_at` of a contact row read with `CONTACT_COLUMNS` (its page key).
pub fn contact_created_at(row: &Row) -> DateTime<Utc> {
    row.get(15)
}

pub const STAGE_COLUMNS: &str = "s.id, s.pipeline_id, s.name, s.position, s.kind";

pub fn stage(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "pipeline_id": row.get::<_, Uuid>(1),
        "name": row.get::<_, String>(2),
        "position": row.get::<_, i32>(3),
        "kind": row.get::<_, String>(4),
    })
}

pub const PIPELINE_COLUMNS: &str = "p.id, p.name, p.is_default, p.created_at";

pub fn pipeline(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "is_default": row.get::<_, bool>(2),
        "created_at": ts(row.get(3)),
    })
}

pub const ACTIVITY_COLUMNS: &str =
    "a.id, a.type, a.deal_id, a.body, a.metadata, a.actor, a.occurred_at, a.created_at";

pub fn activity(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "type": row.get::<_, String>(1),
        "deal_id": row.get::<_, Option<Uuid>>(2),
        "body": row.get::<_, Option<String>>(3),
        "metadata": row.get::<_, Value>(4),
        "actor": row.get::<_, String>(5),
        "occurred_at": ts(row.get(6)),
        "created_at": ts(row.get(7)),
    })
}
