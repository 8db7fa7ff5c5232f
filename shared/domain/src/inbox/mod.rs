//! The messaging reads and flags (functions/messages-read): a contact's
//! messages page by page, the read/starred flags, the polling feed
//! (`message_feed`, migrations/V11) and the admins' debug reads.
//!
//! Messages have no owner of their own: a caller sees a message when they
//! may read its contact (members: own and unowned contacts; admins: all).
//! Anything else answers 404, as the CRM API does.

pub mod conversations;
pub mod media;
pub mod templates;

use crate::{
    auth::Principal,
    crm::{
        ApiError,
        board::{DEFAULT_LIMIT, MAX_LIMIT, first_page_key},
        cursor::{Cursor, CursorKind},
        input,
    },
    db::GenericClient,
    phone::{PhoneE164, PhoneRegion},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

/// Columns of `message` (the JSON a message answers as), for `messages m`.
const MESSAGE_COLUMNS: &str = "m.id, m.contact_id, m.direction, m.channel, m.body, m.provider_sid, \
     m.status, m.error_code, m.error_message, m.num_media, m.template_sid, m.media_key, \
     m.profile_name, m.is_read, m.read_at, m.is_starred, m.starred_at, m.status_updated_at, \
     m.created_at, m.updated_at";

/// Members read their own contacts and unowned ones (`$1` = `Principal::owner_scope`).
const VISIBLE_CONTACT: &str = "($1::text is null or c.owner_id = $1 or c.owner_id is null)";

fn message(r: &Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>(0),
        "contact_id": r.get::<_, Uuid>(1),
        "direction": r.get::<_, String>(2),
        "channel": r.get::<_, String>(3),
        "body": r.get::<_, Option<String>>(4),
        "provider_sid": r.get::<_, Option<String>>(5),
        "status": r.get::<_, String>(6),
        "error_code": r.get::<_, Option<i32>>(7),
        "error_message": r.get::<_, Option<String>>(8),
        "num_media": r.get::<_, i32>(9),
        "template_sid": r.get::<_, Option<String>>(10),
        "media_key": r.get::<_, Option<String>>(11),
        "profile_name": r.get::<_, Option<String>>(12),
        "is_read": r.get::<_, bool>(13),
        "read_at": r.get::<_, Option<DateTime<Utc>>>(14),
        "is_starred": r.get::<_, bool>(15),
        "starred_at": r.get::<_, Option<DateTime<Utc>>>(16),
        "status_updated_at": r.get::<_, DateTime<Utc>>(17),
        "created_at": r.get::<_, DateTime<Utc>>(18),
        "updated_at": r.get::<_, DateTime<Utc>>(19),
    })
}

// ---------------------------------------------------------------- messages

/// `GET /api/contacts/{id}/messages?cursor=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub cursor: Option<Cursor>,
    pub limit: i64,
}

impl MessagePage {
    pub fn parse(cursor: Option<&str>, limit: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            cursor: cursor
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Cursor::decode(c, CursorKind::Messages))
                .transpose()?,
            limit: input::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }
}

/// Whether the caller may read contact `id` (404 otherwise, also when it does not exist).
async fn visible_contact(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "select 1 from contacts c where c.id = $2 and {VISIBLE_CONTACT}"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact visibility check"))?;
    db.query_opt(&stmt, &[&who.owner_scope(), &id])
        .await
        .map_err(|e| ApiError::from_db(e, "checking the contact"))?
        .map(|_| ())
        .ok_or(ApiError::NotFound("contact"))
}

/// A contact's messages, newest `created_at` first, keyset-paginated on
/// `(created_at, id)` (never changed, so pages neither repeat nor skip).
pub async fn contact_messages(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    q: &MessagePage,
) -> Result<Value, ApiError> {
    visible_contact(db, who, contact_id).await?;
    let (at, id) = q.cursor.map_or_else(first_page_key, |c| (c.at, c.id));
    let stmt = db
        .prepare_cached(&format!(
            "select {MESSAGE_COLUMNS} from messages m where m.contact_id = $1 \
             and m.created_at <= $2 and (m.created_at, m.id) < ($2, $3) \
             order by m.created_at desc, m.id desc limit $4"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the messages page"))?;
    let rows = db
        .query(&stmt, &[&contact_id, &at, &id, &(q.limit + 1)])
        .await
        .map_err(|e| ApiError::from_db(e, "reading messages"))?;
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (rows.len() > limit).then(|| {
        let last = &rows[limit - 1];
        Cursor {
            at: last.get(18),
            id: last.get(0),
            stage_id: None,
        }
        .encode(CursorKind::Messages)
    });
    let messages: Vec<Value> = rows.iter().take(limit).map(message).collect();
    Ok(json!({"messages": messages, "next_cursor": next_cursor, "limit": q.limit}))
}

/// `PATCH /api/messages/{id}` body: each flag absent (left as is) or a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub is_read: Option<bool>,
    pub is_starred: Option<bool>,
}

impl Flags {
    /// Only `is_read` and `is_starred`, each a boolean; anything else is a 422 naming it.
    pub fn parse(map: &Map<String, Value>) -> Result<Self, ApiError> {
        if let Some(unknown) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "is_read" | "is_starred"))
        {
            return Err(ApiError::validation(
                unknown.clone(),
                "is not a known field",
            ));
        }
        let flag = |name: &str| match map.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::validation(name, "must be true or false")),
        };
        Ok(Self {
            is_read: flag("is_read")?,
            is_starred: flag("is_starred")?,
        })
    }
}

/// Sets the flags: a flag turned on gets its timestamp (kept when it already
/// was on), turned off loses it — the pairing `messages_read_at` and
/// `messages_starred_at` enforce. `updated_at` moves only when a flag changed.
pub async fn set_flags(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    flags: Flags,
) -> Result<Value, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "update messages m set \
               is_read = coalesce($3, m.is_read), \
               read_at = case when $3::boolean is null then m.read_at \
                              when $3 then coalesce(m.read_at, now()) end, \
               is_starred = coalesce($4, m.is_starred), \
               starred_at = case when $4::boolean is null then m.starred_at \
                                 when $4 then coalesce(m.starred_at, now()) end, \
               updated_at = case when coalesce($3, m.is_read) <> m.is_read \
                                   or coalesce($4, m.is_starred) <> m.is_starred \
                                 then now() else m.updated_at end \
             from contacts c where m.id = $2 and c.id = m.contact_id and {VISIBLE_CONTACT} \
             returning {MESSAGE_COLUMNS}"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the message flags update"))?;
    let row = db
        .query_opt(
            &stmt,
            &[&who.owner_scope(), &id, &flags.is_read, &flags.is_starred],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "setting message flags"))?
        .ok_or(ApiError::NotFound("message"))?;
    Ok(json!({ "message": message(&row) }))
}

// ---------------------------------------------------------------- the feed

/// Where a feed reader stands: the `(txid, id)` of the last event it got.
/// Opaque to clients: base64url of `f1|<txid>|<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedCursor {
    pub txid: i64,
    pub id: i64,
}

impl FeedCursor {
    pub fn encode(&self) -> String {
        B64.encode(format!("f1|{}|{}", self.txid, self.id))
    }

    /// Blank or absent: the start of the feed. Anything we did not issue: 422 `after`.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::default());
        };
        let invalid = || ApiError::validation("after", "is not a valid cursor");
        let text =
            String::from_utf8(B64.decode(raw).map_err(|_| invalid())?).map_err(|_| invalid())?;
        match text.split('|').collect::<Vec<_>>().as_slice() {
            ["f1", txid, id] => Ok(Self {
                txid: txid.parse().map_err(|_| invalid())?,
                id: id.parse().map_err(|_| invalid())?,
            }),
            _ => Err(invalid()),
        }
    }
}

/// Where "now" is in the feed (`?after=now`): every event of a transaction
/// that finished before the oldest one still running is behind it, every
/// other event after it. Starting there a poller gets no history, and still
/// never misses an event: one whose transaction is running now has a txid
/// at or above the snapshot's xmin, so it sorts after this cursor.
pub async fn feed_head(db: &impl GenericClient) -> Result<FeedCursor, ApiError> {
    let row = db
        .query_one(
            "select pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1",
            &[],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the feed head"))?;
    Ok(FeedCursor {
        txid: row.get(0),
        id: i64::MAX,
    })
}

/// Feed events after `after`, oldest first, on contacts the caller may read.
///
/// Only events whose transaction finished before every transaction still
/// running (`txid < pg_snapshot_xmin`) are answered, ordered by
/// `(txid, id)`: an event committed later always sorts after the cursor, so
/// a poller never skips one. `next_after` moves past events the caller may
/// not see too; it stays where it was when nothing new is settled.
pub async fn feed(
    db: &impl GenericClient,
    who: &Principal,
    after: FeedCursor,
    limit: i64,
) -> Result<Value, ApiError> {
    // Scan settled rows in cursor order; visibility is applied to that scan,
    // so the cursor can advance over a page of events the caller cannot see.
    let stmt = db
        .prepare_cached(&format!(
            "with settled as ( \
               select f.id, f.txid, f.kind, f.message_id, f.contact_id, f.status, f.at \
               from message_feed f \
               where (f.txid, f.id) > ($2, $3) \
                 and f.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
               order by f.txid, f.id limit $4) \
             select s.id, s.txid, s.kind, s.message_id, s.contact_id, s.status, s.at, \
                    (c.id is not null) as visible \
             from settled s left join contacts c on c.id = s.contact_id and {VISIBLE_CONTACT} \
             order by s.txid, s.id"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the feed read"))?;
    let rows = db
        .query(&stmt, &[&who.owner_scope(), &after.txid, &after.id, &limit])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the feed"))?;
    let next = rows.last().map_or(after, |r| FeedCursor {
        txid: r.get(1),
        id: r.get(0),
    });
    let events: Vec<Value> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(7))
        .map(|r| {
            let mut e = json!({
                "id": r.get::<_, i64>(0),
                "kind": r.get::<_, String>(2),
                "message_id": r.get::<_, Uuid>(3),
                "contact_id": r.get::<_, Uuid>(4),
                "at": r.get::<_, DateTime<Utc>>(6),
            });
            if let Some(status) = r.get::<_, Option<String>>(5) {
                e["status"] = json!(status);
            }
            e
        })
        .collect();
    Ok(json!({"events": events, "next_after": next.encode(), "limit": limit}))
}

// ---------------------------------------------------------------- debug (admins)

/// The webhook traffic of the last `hours`: counts by source × status, and
/// the last 20 errors (failed or rejected) — never payloads.
pub async fn webhook_diagnostics(db: &impl GenericClient, hours: i32) -> Result<Value, ApiError> {
    let counts = db
        .query(
            "select source, status, count(*) from webhook_events \
             where received_at > now() - make_interval(hours => $1) \
             group by source, status order by source, status",
            &[&hours],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "counting webhook events"))?;
    let errors = db
        .query(
            "select id, source, status, error_code, error, received_at from webhook_events \
             where received_at > now() - make_interval(hours => $1) \
               and status in ('failed', 'rejected') \
             order by received_at desc, id desc limit 20",
            &[&hours],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the last webhook errors"))?;
    let counts: Vec<Value> = counts
        .iter()
        .map(|r| {
            json!({"source": r.get::<_, String>(0), "status": r.get::<_, String>(1),
                   "count": r.get::<_, i64>(2)})
        })
        .collect();
    let errors: Vec<Value> = errors
        .iter()
        .map(|r| {
            json!({"id": r.get::<_, Uuid>(0), "source": r.get::<_, String>(1),
                   "status": r.get::<_, String>(2), "error_code": r.get::<_, Option<String>>(3),
                   "error": r.get::<_, Option<String>>(4),
                   "received_at": r.get::<_, DateTime<Utc>>(5)})
        })
        .collect();
    Ok(json!({"hours": hours, "counts": counts, "last_errors": errors}))
}

/// How many messages `GET /api/debug/messages` answers.
pub const DEBUG_MESSAGES_LIMIT: i64 = 50;

/// The messages of the contact(s) a phone number names, matched as the
/// Twilio webhook matches a sender: exact E.164 or another spelling of it in
/// the same country (`PhoneE164::variants`). Newest first, at most
/// `DEBUG_MESSAGES_LIMIT`.
pub async fn messages_by_phone(
    db: &impl GenericClient,
    raw_phone: &str,
    region: PhoneRegion,
) -> Result<Value, ApiError> {
    let phone = PhoneE164::parse_sender(raw_phone, region)
        .map_err(|_| ApiError::validation("phone", "is not a valid phone number"))?;
    let exact = db
        .query(
            "select id, full_name, phone from contacts where phone = any($1) order by created_at, id",
            &[&phone.variants()],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "finding contacts by phone"))?;
    let contacts = exact;
    let ids: Vec<Uuid> = contacts.iter().map(|r| r.get(0)).collect();
    let rows = db
        .query(
            &format!(
                "select {MESSAGE_COLUMNS} from messages m where m.contact_id = any($1) \
                 order by m.created_at desc, m.id desc limit $2"
            ),
            &[&ids, &DEBUG_MESSAGES_LIMIT],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading messages by phone"))?;
    let contacts: Vec<Value> = contacts
        .iter()
        .map(|r| {
            json!({"id": r.get::<_, Uuid>(0), "full_name": r.get::<_, Option<String>>(1),
                   "phone": r.get::<_, Option<String>>(2)})
        })
        .collect();
    Ok(json!({
        "contacts": contacts,
        "messages": rows.iter().map(message).collect::<Vec<_>>(),
        "limit": DEBUG_MESSAGES_LIMIT,
    }))
}
