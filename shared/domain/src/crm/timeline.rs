//! GET /crm/contacts/{id}/timeline: a contact's activities page by page
//! (replies, meetings, messages, stage changes, notes, system entries),
//! newest `occurred_at` first, keyset-paginated on `(occurred_at, id)`
//! through the shared cursor codec (`CursorKind::Activities`).
//!
//! Same access as GET /crm/contacts/{id}: 404 for a contact the caller may
//! not read; activities tied to a deal the caller may not see are left out.

use super::{
    board::{DEFAULT_LIMIT, MAX_LIMIT, first_page_key},
    cursor::{Cursor, CursorKind},
    error::ApiError,
    input,
};
use crate::{auth::Principal, db::GenericClient};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// The `activities.type` CHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    EmailIn,
    EmailOut,
    Meeting,
    MessageIn,
    MessageOut,
    StageChange,
    System,
    Note,
}

impl ActivityType {
    pub const ALL: [ActivityType; 8] = [
        Self::EmailIn,
        Self::EmailOut,
        Self::Meeting,
        Self::MessageIn,
        Self::MessageOut,
        Self::StageChange,
        Self::System,
        Self::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailIn => "email_in",
            Self::EmailOut => "email_out",
            Self::Meeting => "meeting",
            Self::MessageIn => "message_in",
            Self::MessageOut => "message_out",
            Self::StageChange => "stage_change",
            Self::System => "system",
            Self::Note => "note",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// `?cursor=&limit=&type=a,b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineQuery {
    pub cursor: Option<Cursor>,
    pub limit: i64,
    /// Empty: every type.
    pub types: Vec<ActivityType>,
}

impl TimelineQuery {
    pub fn parse(
        cursor: Option<&str>,
        limit: Option<&str>,
        types: Option<&str>,
    ) -> Result<Self, ApiError> {
        let types = types
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|raw| {
                raw.split(',')
                    .map(|t| {
                        ActivityType::parse(t.trim()).ok_or_else(|| {
                            ApiError::validation("type", "is not a known activity type")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            cursor: cursor
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Cursor::decode(c, CursorKind::Activities))
                .transpose()?,
            limit: input::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            types,
        })
    }
}

fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    // The format of every other timestamp of the CRM API (records::ts).
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// One activity, as GET /crm/contacts/{id} answers them (`Activity`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub deal_id: Option<Uuid>,
    pub body: Option<String>,
    /// The activity's own metadata document, passed through as stored.
    pub metadata: serde_json::Value,
    pub actor: String,
    #[serde(serialize_with = "micros")]
    pub occurred_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePage {
    pub contact_id: Uuid,
    pub timeline: Vec<Entry>,
    pub next_cursor: Option<String>,
    pub limit: i64,
}

pub async fn page(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    q: &TimelineQuery,
) -> Result<TimelinePage, ApiError> {
    let scope = who.owner_scope();
    let visible = db
        .prepare_cached(
            "select 1 from contacts c where c.id = $2 \
             and ($1::text is null or c.owner_id = $1 or c.owner_id is null)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact visibility check"))?;
    db.query_opt(&visible, &[&scope, &contact_id])
        .await
        .map_err(|e| ApiError::from_db(e, "checking the contact"))?
        .ok_or(ApiError::NotFound("contact"))?;
    let (at, id) = q.cursor.map_or_else(first_page_key, |c| (c.at, c.id));
    let types: Vec<&str> = q.types.iter().map(|t| t.as_str()).collect();
    let stmt = db
        .prepare_cached(
            "select a.id, a.type, a.deal_id, a.body, a.metadata, a.actor, a.occurred_at, a.created_at \
             from activities a left join deals d on d.id = a.deal_id \
             where a.contact_id = $2 \
               and (a.deal_id is null or $1::text is null or d.owner_id = $1 or d.owner_id is null) \
               and (cardinality($6::text[]) = 0 or a.type = any($6)) \
               and a.occurred_at <= $3 and (a.occurred_at, a.id) < ($3, $4) \
             order by a.occurred_at desc, a.id desc limit $5",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the timeline page"))?;
    let rows = db
        .query(
            &stmt,
            &[&scope, &contact_id, &at, &id, &(q.limit + 1), &types],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the timeline"))?;
    let mut timeline: Vec<Entry> = rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            // The `activities.type` CHECK allows only these.
            kind: ActivityType::parse(r.get(1)).unwrap_or(ActivityType::System),
            deal_id: r.get(2),
            body: r.get(3),
            metadata: r.get(4),
            actor: r.get(5),
            occurred_at: r.get(6),
            created_at: r.get(7),
        })
        .collect();
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (timeline.len() > limit).then(|| {
        timeline.truncate(limit);
        let last = &timeline[limit - 1];
        Cursor {
            at: last.occurred_at,
            id: last.id,
            stage_id: None,
        }
        .encode(CursorKind::Activities)
    });
    Ok(TimelinePage {
        contact_id,
        timeline,
        next_cursor,
        limit: q.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_the_activities_check_and_refused_by_name() {
        let q = TimelineQuery::parse(None, None, Some("note, stage_change")).unwrap();
        assert_eq!(q.types, [ActivityType::Note, ActivityType::StageChange]);
        let e = TimelineQuery::parse(None, None, Some("note,bogus")).unwrap_err();
        assert_eq!(e.body()["field"], "type");
        let e = TimelineQuery::parse(Some("nope"), None, None).unwrap_err();
        assert_eq!(e.body()["field"], "cursor");
        for t in ActivityType::ALL {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
    }
}
