//! The inbox's conversation list (GET /api/conversations) and "mark a
//! conversation read" (POST /api/conversations/{id}/read).
//!
//! A conversation is a contact with at least one message. Unread is derived
//! from the messages themselves (inbound, `is_read = false`): there is no
//! other unread state (V20 dropped `notifications`; docs/inbox.md).
//!
//! Order: the newest message's `created_at`, newest first, then the contact
//! id; keyset pages on that pair through the shared cursor codec
//! (`CursorKind::Conversations`), scanning `messages_recent_idx` (V20). The key moves when a contact gets a new
//! message, but only upwards: a conversation never shows twice while a
//! client pages; one that moved to the top is seen on the next first page.

use crate::{
    auth::Principal,
    crm::{
        ApiError,
        board::{DEFAULT_LIMIT, MAX_LIMIT, first_page_key},
        cursor::{Cursor, CursorKind},
        input,
    },
    db::GenericClient,
    messaging::{Channel, WINDOW},
};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use tokio_postgres::Row;
use uuid::Uuid;

/// How many characters of a body the list shows.
pub const PREVIEW_CHARS: usize = 120;

/// `GET /api/conversations?cursor=&limit=&channel=&unread=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationQuery {
    pub cursor: Option<Cursor>,
    pub limit: i64,
    pub channel: Option<Channel>,
    pub unread_only: bool,
}

fn blank(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

impl ConversationQuery {
    pub fn parse(
        cursor: Option<&str>,
        limit: Option<&str>,
        channel: Option<&str>,
        unread: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            cursor: blank(cursor)
                .map(|c| Cursor::decode(c, CursorKind::Conversations))
                .transpose()?,
            limit: input::limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            channel: blank(channel)
                .map(|c| {
                    Channel::parse(c)
                        .ok_or_else(|| ApiError::validation("channel", "must be whatsapp or sms"))
                })
                .transpose()?,
            unread_only: match blank(unread) {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(ApiError::validation("unread", "must be true or false")),
            },
        })
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    fn from_db(raw: &str) -> Self {
        // The `messages.direction` CHECK allows exactly these two.
        if raw == "in" { Self::In } else { Self::Out }
    }
}

fn channel_str<S: Serializer>(c: &Channel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

/// The newest message of a conversation, as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastMessage {
    pub id: Uuid,
    pub direction: Direction,
    #[serde(serialize_with = "channel_str")]
    pub channel: Channel,
    /// As stored (`messages.status`); passed through, never interpreted here.
    pub status: String,
    /// The body cut to `PREVIEW_CHARS` (… appended when cut); `None` for media only.
    pub preview: Option<String>,
    pub num_media: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    pub contact_id: Uuid,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub owner_id: Option<String>,
    pub unread_count: i64,
    pub last_message: LastMessage,
    /// Last inbound WhatsApp message + 24 h; `None` when there is none.
    pub window_open_until: Option<DateTime<Utc>>,
    /// `window_open_until` is after the database's `now()`.
    pub window_open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    pub next_cursor: Option<String>,
    pub limit: i64,
}

/// The answer of POST /api/conversations/{id}/read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarkedRead {
    pub contact_id: Uuid,
    /// Messages this call marked (0 when all were read already).
    pub marked: u64,
}

/// `body` cut to `PREVIEW_CHARS` characters, `…` appended when cut.
pub fn preview(body: &str) -> String {
    match body.char_indices().nth(PREVIEW_CHARS) {
        None => body.to_string(),
        Some((at, _)) => format!("{}…", body[..at].trim_end()),
    }
}

/// Last inbound WhatsApp message + the 24-hour window.
pub fn window_open_until(last_inbound_whatsapp: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    last_inbound_whatsapp.map(|at| at + WINDOW)
}

/// The visibility rule of every inbox read (`$1` = `Principal::owner_scope`).
const VISIBLE_CONTACT: &str = "($1::text is null or c.owner_id = $1 or c.owner_id is null)";

fn conversation(r: &Row) -> Conversation {
    let body: Option<String> = r.get(8);
    let channel: String = r.get(6);
    let until = window_open_until(r.get(12));
    Conversation {
        contact_id: r.get(0),
        full_name: r.get(1),
        phone: r.get(2),
        owner_id: r.get(3),
        last_message: LastMessage {
            id: r.get(4),
            direction: Direction::from_db(r.get(5)),
            // The `messages.channel` CHECK allows only the two channels.
            channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
            status: r.get(7),
            preview: body.as_deref().map(preview),
            num_media: r.get(9),
            created_at: r.get(10),
        },
        unread_count: r.get(11),
        window_open: until.is_some_and(|u| u > r.get::<_, DateTime<Utc>>(13)),
        window_open_until: until,
    }
}

/// One page of the caller's conversations.
pub async fn list(
    db: &impl GenericClient,
    who: &Principal,
    q: &ConversationQuery,
) -> Result<ConversationPage, ApiError> {
    let (at, id) = q.cursor.map_or_else(first_page_key, |c| (c.at, c.id));
    // Messages newest first (messages_recent_idx, V20) from the cursor; one
    // counts when it is its contact's newest (on the channel, if filtered).
    // Unread and the window are probed for the page's rows only.
    let stmt = db
        .prepare_cached(&format!(
            "select c.id, c.full_name, c.phone, c.owner_id, \
                    l.id, l.direction, l.channel, l.status, l.body, l.num_media, l.created_at, \
                    (select count(*) from messages m \
                     where m.contact_id = c.id and m.direction = 'in' and not m.is_read \
                       and ($5::text is null or m.channel = $5)), \
                    (select max(m.created_at) from messages m \
                     where m.contact_id = c.id and m.direction = 'in' and m.channel = 'whatsapp'), \
                    now(), l.created_at \
             from messages l \
             join contacts c on c.id = l.contact_id \
             where {VISIBLE_CONTACT} \
               and l.created_at <= $2 and (l.created_at, l.contact_id) < ($2, $3) \
               and ($5::text is null or l.channel = $5) \
               and not exists (select 1 from messages n where n.contact_id = l.contact_id \
                     and ($5::text is null or n.channel = $5) \
                     and (n.created_at, n.id) > (l.created_at, l.id)) \
               and (not $6 or exists (select 1 from messages m \
                     where m.contact_id = l.contact_id and m.direction = 'in' and not m.is_read \
                       and ($5::text is null or m.channel = $5))) \
             order by l.created_at desc, l.contact_id desc limit $4"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the conversations page"))?;
    let channel = q.channel.map(Channel::as_str);
    let rows = db
        .query(
            &stmt,
            &[
                &who.owner_scope(),
                &at,
                &id,
                &(q.limit + 1),
                &channel,
                &q.unread_only,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading conversations"))?;
    let limit = usize::try_from(q.limit).expect("limit is positive");
    let next_cursor = (rows.len() > limit).then(|| {
        let last = &rows[limit - 1];
        Cursor {
            at: last.get(14),
            id: last.get(0),
            stage_id: None,
        }
        .encode(CursorKind::Conversations)
    });
    let conversations: Vec<Conversation> = rows.iter().take(limit).map(conversation).collect();
    Ok(ConversationPage {
        conversations,
        next_cursor,
        limit: q.limit,
    })
}

/// Marks every unread inbound message of the contact read (404 when the
/// caller may not read the contact). Idempotent: a second call marks 0.
pub async fn mark_read(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
) -> Result<MarkedRead, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "with visible as (select c.id from contacts c where c.id = $2 and {VISIBLE_CONTACT}), \
             marked as ( \
                 update messages m set is_read = true, read_at = now(), updated_at = now() \
                 from visible v where m.contact_id = v.id and m.direction = 'in' and not m.is_read \
                 returning 1) \
             select exists (select 1 from visible), (select count(*) from marked)"
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the conversation read"))?;
    let row = db
        .query_one(&stmt, &[&who.owner_scope(), &contact_id])
        .await
        .map_err(|e| ApiError::from_db(e, "marking the conversation read"))?;
    if !row.get::<_, bool>(0) {
        return Err(ApiError::NotFound("contact"));
    }
    Ok(MarkedRead {
        contact_id,
        marked: row.get::<_, i64>(1).unsigned_abs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn previews_cut_on_characters_not_bytes() {
        assert_eq!(preview("merhaba"), "merhaba");
        let long = "ş".repeat(PREVIEW_CHARS + 5);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(
            preview(&"a".repeat(PREVIEW_CHARS)),
            "a".repeat(PREVIEW_CHARS)
        );
    }

    #[test]
    fn the_window_is_the_last_inbound_whatsapp_plus_24_hours() {
        let at = DateTime::from_timestamp(1_795_428_000, 0).unwrap();
        assert_eq!(window_open_until(Some(at)), Some(at + Duration::hours(24)));
        assert_eq!(window_open_until(None), None);
    }

    #[test]
    fn query_fields_are_checked_by_name() {
        let field = |r: Result<ConversationQuery, ApiError>| r.unwrap_err().body()["field"].clone();
        assert_eq!(
            field(ConversationQuery::parse(Some("zz"), None, None, None)),
            "cursor"
        );
        assert_eq!(
            field(ConversationQuery::parse(None, Some("0"), None, None)),
            "limit"
        );
        assert_eq!(
            field(ConversationQuery::parse(None, None, Some("email"), None)),
            "channel"
        );
        assert_eq!(
            field(ConversationQuery::parse(None, None, None, Some("yes"))),
            "unread"
        );
        let q = ConversationQuery::parse(None, None, Some("sms"), Some("true")).unwrap();
        assert_eq!(
            (q.channel, q.unread_only, q.limit),
            (Some(Channel::Sms), true, DEFAULT_LIMIT)
        );
        // Another list's cursor is not a conversations cursor.
        let other = Cursor {
            at: Utc::now(),
            id: Uuid::now_v7(),
            stage_id: None,
        }
        .encode(CursorKind::Messages);
        assert_eq!(
            field(ConversationQuery::parse(Some(&other), None, None, None)),
            "cursor"
        );
    }
}
