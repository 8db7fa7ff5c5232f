//! GET /crm/pipelines, GET /crm/contacts?q=…, GET /crm/contacts/{id}.
//! Members read their own records and unowned ones; admins all. A contact
//! outside that answers 404.

use super::{
    board::{self, first_page_key},
    cursor::{Cursor, CursorKind},
    error::ApiError,
    input, records,
};
use crate::{
    auth::Principal,
    db::GenericClient,
    phone::{PhoneE164, PhoneRegion},
};
use serde_json::{Value, json};
use uuid::Uuid;

/// How many activities a contact's detail carries (newest first).
pub const TIMELINE_LIMIT: i64 = 100;
/// How many deals a contact's detail carries (newest first).
pub const CONTACT_DEALS_LIMIT: i64 = 100;

/// Every pipeline (default first) with its stages in board order. Pipelines
/// are shared configuration: every authenticated user sees them all.
pub async fn pipelines(db: &impl GenericClient) -> Result<Value, ApiError> {
    let rows = db
        .query(
            &format!(
                "select {} from pipelines p order by p.is_default desc, p.name",
                records::PIPELINE_COLUMNS
            ),
            &[],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading pipelines"))?;
    let stages = db
        .query(
            &format!(
                "select {} from pipeline_stages s order by s.pipeline_id, s.position",
                records::STAGE_COLUMNS
            ),
            &[],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading stages"))?;
    let list: Vec<Value> = rows
        .iter()
        .map(|p| {
            let id: Uuid = p.get(0);
            let mut pipeline = records::pipeline(p);
            pipeline["stages"] = stages
                .iter()
                .filter(|s| s.get::<_, Uuid>(1) == id)
                .map(records::stage)
                .collect();
            pipeline
        })
        .collect();
    Ok(json!({ "pipelines": list }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    /// `ilike` pattern, already escaped; `None` lists every visible contact.
    pub pattern: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: i64,
}

impl ContactQuery {
    pub fn parse(
        q: Option<&str>,
        cursor: Option<&str>,
        limit: Option<&str>,
        region: PhoneRegion,
    ) -> Result<Self, ApiError> {
        let q = q.map(str::trim).filter(|q| !q.is_empty());
        if let Some(q) = q {
            if q.chars().count() > 200 {
                return Err(ApiError::validation("q", "is longer than 200 characters"));
            }
            if q.chars().any(char::is_control) {
                return Err(ApiError::validation("q", "contains control characters"));
            }
        }
        Ok(Self {
            pattern: q.map(|q| search_pattern(q, region)),
            cursor: cursor
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Cursor::decode(c, CursorKind::Contacts))
                .transpose()?,
            limit: input::limit(limit, board::DEFAULT_LIMIT, board::MAX_LIMIT)?,
        })
    }
}

/// Case-insensitive substring of name, e-mail, phone or company. A query
/// that looks like a phone number matches by digits (`0532 123 45 67` finds
/// `+905321234567`, read in the default region).
pub fn search_pattern(q: &str, region: PhoneRegion) -> String {
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let phoneish = digits.len() >= 3
        && q.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let needle = if phoneish {
        match PhoneE164::parse(q, region) {
            Ok(p) => p.as_str().trim_start_matches('+').to_string(),
            Err(_) => digits,
        }
    } else {
        let mut escaped = String::with_capacity(q.len());
        for c in q.chars() {
            if matches!(c, '\\' | '%' | '_') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped
    };
    format!("%{needle}%")
}

/// The text `contacts_search_trgm_idx` (migrations/V4) indexes; must stay identical.
const SEARCH_TEXT: &str = "(coalesce(c.full_name, '') || ' ' || coalesce(c.email, '') || ' ' \
     || coalesce(c.phone, '') || ' ' || coalesce(c.company, ''))";

/// Newest contacts first, keyset-paginated on `(created_at, id)`, which
/// never changes: pages neither repeat nor skip a contact.
pub async fn search_contacts(
    db: &impl GenericClient,
    who: &Principal,
    q: &ContactQuery,
) -> Result<Value, ApiError> {
    let (at, id) = q.cursor.map_or_else(first_page_key, |c| (c.at, c.id));
    let fetch = q.limit + 1;
    let scope = who.owner_scope();
    let visible = "($1::text is null or c.owner_id = $1 or c.owner_id is null) \
                   and c.created_at <= $2 and (c.created_at, c.id) < ($2, $3)";
    let order = "order by c.created_at desc, c.id desc limit $4";
    let rows = match &q.pattern {
        Some(pattern) => {
            let stmt = db
                .prepare_cached(&format!(
                    "select {} from contacts c where {visible} and {SEARCH_TEXT} ilike $5 {order}",
                    records::CONTACT_COLUMNS
                ))
                .await
                .map_err(|e| ApiError::from_db(e, "preparing the contact search"))?;
            db.query(&stmt, &[&scope, &at, &id, &fetch, pattern]).await
        }
        None => {
            let stmt = db
                .prepare_cached(&format!(
                    "select {} from contacts c where {visible} {order}",
                    records::CONTACT_COLUMNS
                ))
                .await
                .map_err(|e| ApiError::from_db(e, "preparing the contact list"))?;
            db.query(&stmt, &[&scope, &at, &id, &fetch]).await
        }
    }
    .map_err(|e| ApiError::from_db(e, "searching contacts"))?;
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (rows.len() > limit).then(|| {
        let last = &rows[limit - 1];
        Cursor {
            at: records::contact_created_at(last),
            id: last.get(0),
            stage_id: None,
        }
        .encode(CursorKind::Contacts)
    });
    let contacts: Vec<Value> = rows.iter().take(limit).map(records::contact).collect();
    Ok(json!({"contacts": contacts, "next_cursor": next_cursor, "limit": q.limit}))
}

/// One contact with its opt-outs, its deals and its timeline (activities
/// newest first, at most `TIMELINE_LIMIT`; activities of deals the caller
/// may not see are left out). Read in one snapshot when `db` is a
/// repeatable-read transaction.
pub async fn contact_detail(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<Value, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "select {} from contacts c where c.id = $1",
            records::CONTACT_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact read"))?;
    let contact = db
        .query_opt(&stmt, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the contact"))?
        .filter(|row| who.may_read(row.get::<_, Option<&str>>(9)))
        .ok_or(ApiError::NotFound("contact"))?;
    let scope = who.owner_scope();
    let deals = db
        .prepare_cached(&format!(
            "select {} from deals d join contacts c on c.id = d.contact_id \
             where d.contact_id = $1 and ($2::text is null or d.owner_id = $2 or d.owner_id is null) \
             order by d.created_at desc limit $3",
            records::DEAL_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact's deals"))?;
    let deals = db
        .query(&deals, &[&id, &scope, &CONTACT_DEALS_LIMIT])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the contact's deals"))?;
    let timeline = db
        .prepare_cached(&format!(
            "select {} from activities a left join deals d on d.id = a.deal_id \
             where a.contact_id = $1 \
               and (a.deal_id is null or $2::text is null or d.owner_id = $2 or d.owner_id is null) \
             order by a.occurred_at desc, a.id desc limit $3",
            records::ACTIVITY_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the timeline"))?;
    let timeline = db
        .query(&timeline, &[&id, &scope, &TIMELINE_LIMIT])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the timeline"))?;
    let opt_outs = db
        .prepare_cached(
            "select channel, source, created_at from opt_outs where contact_id = $1 order by channel",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the opt-outs read"))?;
    let opt_outs: Vec<Value> = db
        .query(&opt_outs, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the opt-outs"))?
        .iter()
        .map(|r| {
            json!({"channel": r.get::<_, String>(0), "source": r.get::<_, String>(1),
                   "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(2)})
        })
        .collect();
    Ok(json!({
        "contact": records::contact(&contact),
        "opt_outs": opt_outs,
        "deals": deals.iter().map(records::deal).collect::<Vec<_>>(),
        "timeline": timeline.iter().map(records::activity).collect::<Vec<_>>(),
        "timeline_limit": TIMELINE_LIMIT,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_pattern_escapes_wildcards() {
        let tr = PhoneRegion::default();
        assert_eq!(search_pattern("ana", tr), "%ana%");
        assert_eq!(search_pattern("50%_off\\", tr), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn phone_like_queries_match_by_digits() {
        let tr = PhoneRegion::default();
        assert_eq!(search_pattern("0532 123 45 67", tr), "%905321234567%");
        assert_eq!(search_pattern("532-12", tr), "%53212%");
        assert_eq!(search_pattern("+55 11", tr), "%5511%");
    }

    #[test]
    fn query_is_bounded_and_cursor_checked() {
        let tr = PhoneRegion::default();
        let long = "x".repeat(201);
        assert_eq!(
            ContactQuery::parse(Some(&long), None, None, tr)
                .unwrap_err()
                .body()["field"],
            "q"
        );
        assert_eq!(
            ContactQuery::parse(None, Some("zzz"), None, tr)
                .unwrap_err()
                .body()["field"],
            "cursor"
        );
        let q = ContactQuery::parse(Some("  "), None, None, tr).unwrap();
        assert_eq!((q.pattern, q.limit), (None, 50));
    }
}
