//! Segments: saved filters over contacts, and their preview.

use super::{db_err, decode_cursor, encode_cursor};
use crate::{
    auth::Principal,
    campaigns::{
        audit::{self, AuditEntry},
        segment::{SegmentFilter, Sql},
    },
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

const SEGMENT_COLUMNS: &str = "id, name, description, filter, created_by, created_at, updated_at";

fn segment_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "description": r.get::<_, Option<String>>(2),
        "filter": r.get::<_, Value>(3),
        "created_by": r.get::<_, String>(4),
        "created_at": r.get::<_, DateTime<Utc>>(5),
        "updated_at": r.get::<_, DateTime<Utc>>(6),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFields {
    pub name: String,
    pub description: Option<String>,
    pub filter: SegmentFilter,
}

impl SegmentFields {
    pub fn parse(body: Map<String, Value>, base: Option<&SegmentFields>) -> Result<Self, ApiError> {
        let filter_raw = body.get("filter").cloned();
        let f = Fields::new(body, &["name", "description", "filter"])?;
        let name = match (f.text("name", 200)?, base) {
            (Patch::Set(v), _) => v,
            (Patch::Absent, Some(b)) => b.name.clone(),
            _ => return Err(ApiError::validation("name", "is required")),
        };
        let description = match f.text("description", 2000)? {
            Patch::Set(v) => Some(v),
            Patch::Null => None,
            Patch::Absent => base.and_then(|b| b.description.clone()),
        };
        let filter = match filter_raw {
            None => base.map(|b| b.filter.clone()).unwrap_or_default(),
            Some(Value::Null) => SegmentFilter::default(),
            Some(v) => SegmentFilter::parse(&v)?,
        };
        Ok(Self {
            name,
            description,
            filter,
        })
    }
}

/// The pipeline and stages a filter names must exist (and the stages belong
/// to the pipeline when both are given): a typo must not make an empty segment.
async fn check_references(db: &impl GenericClient, f: &SegmentFilter) -> Result<(), ApiError> {
    let (pipeline, stages) = f.referenced_ids();
    if let Some(p) = pipeline {
        let found: bool = db
            .query_one(
                "select exists (select 1 from pipelines where id = $1)",
                &[&p],
            )
            .await
            .map_err(|e| db_err(e, "checking the pipeline"))?
            .get(0);
        if !found {
            return Err(ApiError::validation("filter.pipeline_id", "does not exist"));
        }
    }
    if !stages.is_empty() {
        let ids = stages.to_vec();
        let n: i64 = db
            .query_one(
                "select count(*) from pipeline_stages where id = any($1) \
                 and ($2::uuid is null or pipeline_id = $2)",
                &[&ids, &pipeline],
            )
            .await
            .map_err(|e| db_err(e, "checking the stages"))?
            .get(0);
        if n as usize != ids.len() {
            return Err(ApiError::validation(
                "filter.stage_ids",
                "names a stage that does not exist (in filter.pipeline_id)",
            ));
        }
    }
    Ok(())
}

pub async fn list_segments(db: &impl GenericClient) -> Result<Value, ApiError> {
    let sql = format!("select {SEGMENT_COLUMNS} from segments order by name, id limit 1000");
    let rows = db
        .query(sql.as_str(), &[])
        .await
        .map_err(|e| db_err(e, "listing segments"))?;
    Ok(json!({"items": rows.iter().map(segment_json).collect::<Vec<_>>()}))
}

async fn segment_row(db: &impl GenericClient, id: Uuid, lock: bool) -> Result<Row, ApiError> {
    let sql = format!(
        "select {SEGMENT_COLUMNS} from segments where id = $1{}",
        if lock { " for update" } else { "" }
    );
    db.query_opt(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "reading a segment"))?
        .ok_or(ApiError::NotFound("segment"))
}

pub async fn get_segment(db: &impl GenericClient, id: Uuid) -> Result<Value, ApiError> {
    Ok(segment_json(&segment_row(db, id, false).await?))
}

pub async fn create_segment(
    db: &impl GenericClient,
    who: &Principal,
    s: SegmentFields,
) -> Result<Done, ApiError> {
    check_references(db, &s.filter).await?;
    let sql = format!(
        "insert into segments (name, description, filter, created_by) values ($1, $2, $3, $4) \
         returning {SEGMENT_COLUMNS}"
    );
    let row = db
        .query_one(
            sql.as_str(),
            &[&s.name, &s.description, &s.filter.to_json(), &who.actor()],
        )
        .await
        .map_err(|e| db_err(e, "creating a segment"))?;
    let id: Uuid = row.get(0);
    audit::record(
        db,
        &AuditEntry {
            action: "crm.segment.created",
            actor: &who.actor(),
            target_type: "segment",
            target_id: Some(id.to_string()),
            details: json!({"filter_keys": filter_keys(&s.filter)}),
        },
    )
    .await?;
    Ok(Done::new(201, segment_json(&row)))
}

/// The keys a filter uses (for the audit log: which criteria, not their values).
fn filter_keys(f: &SegmentFilter) -> Vec<String> {
    match f.to_json() {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

pub async fn update_segment(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    body: Map<String, Value>,
) -> Result<Done, ApiError> {
    let row = segment_row(db, id, true).await?;
    let base = SegmentFields {
        name: row.get(1),
        description: row.get(2),
        filter: SegmentFilter::from_stored(&row.get::<_, Value>(3))?,
    };
    let s = SegmentFields::parse(body, Some(&base))?;
    check_references(db, &s.filter).await?;
    let sql = format!(
        "update segments set name = $2, description = $3, filter = $4, updated_at = now() where id = $1 \
         returning {SEGMENT_COLUMNS}"
    );
    let row = db
        .query_one(
            sql.as_str(),
            &[&id, &s.name, &s.description, &s.filter.to_json()],
        )
        .await
        .map_err(|e| db_err(e, "updating a segment"))?;
    let mut changed = Vec::new();
    for (field, differs) in [
        ("name", s.name != base.name),
        ("description", s.description != base.description),
        ("filter", s.filter != base.filter),
    ] {
        if differs {
            changed.push(field);
        }
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.segment.updated",
            actor: &who.actor(),
            target_type: "segment",
            target_id: Some(id.to_string()),
            details: json!({"fields": changed, "filter_keys": filter_keys(&s.filter)}),
        },
    )
    .await?;
    Ok(Done::new(200, segment_json(&row)))
}

pub async fn delete_segment(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<Done, ApiError> {
    let n = db
        .execute("delete from segments where id = $1", &[&id])
        .await
        .map_err(|e| db_err(e, "deleting a segment"))?;
    if n == 0 {
        return Err(ApiError::NotFound("segment"));
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.segment.deleted",
            actor: &who.actor(),
            target_type: "segment",
            target_id: Some(id.to_string()),
            details: json!({}),
        },
    )
    .await?;
    Ok(Done::new(200, json!({"id": id, "deleted": true})))
}

/// GET segments/{id}/preview: how many contacts match now, and the first
/// page (newest first; ids, names and flags — no e-mails or phones).
/// GET segments/{id}/preview: `count` is the whole segment (callers have
/// `can_use_crm`); `items` are only contacts the caller may read.
pub async fn preview_segment(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Value, ApiError> {
    let row = segment_row(db, id, false).await?;
    let filter = SegmentFilter::from_stored(&row.get::<_, Value>(3))?;
    let mut count = Sql::new("select count(*) from contacts c where true");
    filter.push_where(&mut count);
    let total: i64 = db
        .query_one(count.text.as_str(), &count.params())
        .await
        .map_err(|e| db_err(e, "counting the segment"))?
        .get(0);
    let mut page = Sql::new(
        "select c.id, c.full_name, c.owner_id, c.email is not null, c.phone is not null, c.created_at \
         from contacts c where true",
    );
    filter.push_where(&mut page);
    let scope = page.bind(who.owner_scope().map(str::to_string));
    page.push(&format!(
        " and ({scope}::text is null or c.owner_id = {scope} or c.owner_id is null)"
    ));
    if let Some(raw) = cursor {
        let (at, cid) = decode_cursor("sp1", raw)?;
        let a = page.bind(at);
        let b = page.bind(cid);
        page.push(&format!(" and (c.created_at, c.id) < ({a}, {b})"));
    }
    let l = page.bind(limit + 1);
    page.push(&format!(" order by c.created_at desc, c.id desc limit {l}"));
    let rows = db
        .query(page.text.as_str(), &page.params())
        .await
        .map_err(|e| db_err(e, "reading the segment preview"))?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = if more {
        rows.last()
            .map(|r| encode_cursor("sp1", r.get(5), r.get(0)))
    } else {
        None
    };
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, Uuid>(0),
                "full_name": r.get::<_, Option<String>>(1),
                "owner_id": r.get::<_, Option<String>>(2),
                "has_email": r.get::<_, bool>(3),
                "has_phone": r.get::<_, bool>(4),
                "created_at": r.get::<_, DateTime<Utc>>(5),
            })
        })
        .collect();
    Ok(json!({"segment_id": id, "count": total, "items": items, "next_cursor": next}))
}
