//! GET /crm/deals: a pipeline as a Kanban board.
//!
//! Without `stage_id`/`cursor` it answers every column at once, each with
//! its first `limit` deals (newest `created_at` first), its visible deal
//! count and a `next_cursor`: one request draws the board. With
//! `cursor` (which names its column) or `stage_id` it answers that one
//! column's page, in the same shape, for "load more" in one column.
//! Members see their own deals and unowned ones, and only on contacts they
//! may read (own or unowned): a deal is never more visible than its
//! contact, whose name, e-mail and company the card carries. Admins see all.
//!
//! Pages key on `(created_at, id)`, which never change: webhooks and edits
//! touch `updated_at` all the time, and a page key that moves makes deals
//! repeat or vanish between pages. (A deal that changes stage while someone
//! pages leaves one column for another, which no key can prevent.)

use super::{
    cursor::{Cursor, CursorKind},
    error::ApiError,
    records,
};
use crate::{auth::Principal, db::GenericClient};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoardQuery {
    pub pipeline_id: Option<Uuid>,
    pub stage_id: Option<Uuid>,
    pub cursor: Option<Cursor>,
    pub limit: i64,
}

impl BoardQuery {
    /// From query-string values.
    pub fn parse(
        pipeline_id: Option<&str>,
        stage_id: Option<&str>,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Self, ApiError> {
        let cursor = cursor
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| Cursor::decode(c, CursorKind::Deals))
            .transpose()?;
        let stage_id = super::input::query_uuid(stage_id, "stage_id")?;
        if let (Some(s), Some(c)) = (stage_id, &cursor)
            && c.stage_id != Some(s)
        {
            return Err(ApiError::validation("cursor", "belongs to another stage"));
        }
        Ok(Self {
            pipeline_id: super::input::query_uuid(pipeline_id, "pipeline_id")?,
            stage_id: stage_id.or(cursor.and_then(|c| c.stage_id)),
            cursor,
            limit: super::input::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }
}

/// Past every real row (9999-12-31): the key a first page starts after.
pub fn first_page_key() -> (DateTime<Utc>, Uuid) {
    let end = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).expect("a valid date");
    (end, Uuid::max())
}

pub async fn board(
    db: &impl GenericClient,
    who: &Principal,
    q: &BoardQuery,
) -> Result<Value, ApiError> {
    let pipeline = db
        .prepare_cached(&format!(
            "select {} from pipelines p where (case when $1::uuid is null then p.is_default else p.id = $1 end)",
            records::PIPELINE_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the pipeline read"))?;
    let pipeline = db
        .query_opt(&pipeline, &[&q.pipeline_id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the pipeline"))?
        .ok_or_else(|| ApiError::validation("pipeline_id", "does not exist"))?;
    let pipeline_id: Uuid = pipeline.get(0);

    let stages = db
        .prepare_cached(&format!(
            "select {} from pipeline_stages s where s.pipeline_id = $1 order by s.position",
            records::STAGE_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the stages read"))?;
    let mut stages = db
        .query(&stages, &[&pipeline_id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the stages"))?;
    if let Some(only) = q.stage_id {
        stages.retain(|s| s.get::<_, Uuid>(0) == only);
        if stages.is_empty() {
            let field = if q.cursor.is_some() {
                "cursor"
            } else {
                "stage_id"
            };
            return Err(ApiError::validation(
                field,
                "does not belong to the pipeline",
            ));
        }
    }

    let scope = who.owner_scope();
    let counts = db
        .prepare_cached(
            "select d.stage_id, count(*) from deals d join contacts c on c.id = d.contact_id \
             where d.pipeline_id = $1 and ($2::text is null or ((d.owner_id = $2 or d.owner_id is null) \
             and (c.owner_id = $2 or c.owner_id is null))) group by d.stage_id",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the stage counts"))?;
    let counts: HashMap<Uuid, i64> = db
        .query(&counts, &[&pipeline_id, &scope])
        .await
        .map_err(|e| ApiError::from_db(e, "counting deals per stage"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // One more row than asked says whether a next page exists.
    let fetch = q.limit + 1;
    let rows = match q.stage_id {
        Some(stage_id) => {
            let (at, id) = q.cursor.map_or_else(first_page_key, |c| (c.at, c.id));
            let page = db
                .prepare_cached(&format!(
                    "select {} from deals d join contacts c on c.id = d.contact_id \
                     where d.pipeline_id = $1 and d.stage_id = $2 \
                       and ($3::text is null or ((d.owner_id = $3 or d.owner_id is null) \
                         and (c.owner_id = $3 or c.owner_id is null))) \
                       and d.created_at <= $4 and (d.created_at, d.id) < ($4, $5) \
                     order by d.created_at desc, d.id desc limit $6",
                    records::DEAL_COLUMNS
                ))
                .await
                .map_err(|e| ApiError::from_db(e, "preparing the column page"))?;
            db.query(&page, &[&pipeline_id, &stage_id, &scope, &at, &id, &fetch])
                .await
                .map_err(|e| ApiError::from_db(e, "reading a column page"))?
        }
        None => {
            let first = db
                .prepare_cached(&format!(
                    "select {} from pipeline_stages s \
                     cross join lateral ( \
                       select d.* from deals d join contacts vc on vc.id = d.contact_id \
                       where d.pipeline_id = $1 and d.stage_id = s.id \
                         and ($2::text is null or ((d.owner_id = $2 or d.owner_id is null) \
                           and (vc.owner_id = $2 or vc.owner_id is null))) \
                       order by d.created_at desc, d.id desc limit $3) d \
                     join contacts c on c.id = d.contact_id \
                     where s.pipeline_id = $1 \
                     order by s.position, d.created_at desc, d.id desc",
                    records::DEAL_COLUMNS
                ))
                .await
                .map_err(|e| ApiError::from_db(e, "preparing the board read"))?;
            db.query(&first, &[&pipeline_id, &scope, &fetch])
                .await
                .map_err(|e| ApiError::from_db(e, "reading the board"))?
        }
    };

    let mut by_stage: HashMap<Uuid, Vec<&tokio_postgres::Row>> = HashMap::new();
    for row in &rows {
        by_stage.entry(row.get(3)).or_default().push(row);
    }
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let columns: Vec<Value> = stages
        .iter()
        .map(|stage| {
            let stage_id: Uuid = stage.get(0);
            let deals = by_stage.remove(&stage_id).unwrap_or_default();
            let next_cursor = (deals.len() > limit).then(|| {
                let last = deals[limit - 1];
                Cursor {
                    at: records::deal_created_at(last),
                    id: last.get(0),
                    stage_id: Some(stage_id),
                }
                .encode(CursorKind::Deals)
            });
            json!({
                "stage": records::stage(stage),
                "count": counts.get(&stage_id).copied().unwrap_or(0),
                "deals": deals.iter().take(limit).map(|r| records::deal(r)).collect::<Vec<_>>(),
                "next_cursor": next_cursor,
            })
        })
        .collect();
    Ok(json!({
        "pipeline": records::pipeline(&pipeline),
        "stages": columns,
        "limit": q.limit,
    }))
}
