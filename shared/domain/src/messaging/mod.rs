//! Outbound WhatsApp/SMS (POST /api/messages, /api/messages/template): the
//! checks that run before anything is stored, and the one transaction that
//! stores the message `queued` and writes its `send_message` job to the
//! outbox. The send worker hands it to Twilio (`store` holds its queries).
//!
//! Rules, checked in this order after the input parses:
//! - the contact must exist and be visible to the caller (own or unowned for
//!   members, any for admins; others' contacts answer 404 as in crm-actions).
//!   Unowned contacts are allowed because inbound WhatsApp leads start
//!   unowned and somebody has to answer them;
//! - it needs a phone number (422 `validation_failed`, field `contact_id`);
//! - channel: as given, else `whatsapp` when the contact has ever written on
//!   WhatsApp (a `messages.wa_id` is on record), else `sms`;
//! - an opt-out for that channel refuses (409 `opted_out`);
//! - WhatsApp free text (not templates) only within 24 hours of the
//!   contact's last inbound WhatsApp message (409 `window_closed`).

pub mod store;
pub mod template;

use crate::{
    auth::Principal,
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
    jobs::{self, Job, SendMessage},
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

/// WhatsApp's customer service window.
pub const WINDOW: Duration = Duration::hours(24);
/// `messages.body` CHECK.
pub const MAX_BODY_CHARS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Whatsapp,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "whatsapp" => Some(Channel::Whatsapp),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// A media key as `upload-url` hands them out: `uploads/<uuid>.<ext>`.
pub fn parse_media_key(raw: &str) -> Result<String, &'static str> {
    let bad = "must be a media_key from /api/media/upload-url";
    let rest = raw.strip_prefix("uploads/").ok_or(bad)?;
    let (id, ext) = rest.split_once('.').ok_or(bad)?;
    if Uuid::parse_str(id).is_err()
        || ext.is_empty()
        || ext.len() > 5
        || !ext.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(bad);
    }
    Ok(raw.to_string())
}

fn channel_field(f: &Fields) -> Result<Option<Channel>, ApiError> {
    match f.text("channel", 16)? {
        Patch::Set(raw) => Channel::parse(&raw)
            .map(Some)
            .ok_or_else(|| ApiError::validation("channel", "must be whatsapp or sms")),
        _ => Ok(None),
    }
}

fn contact_field(f: &Fields) -> Result<Uuid, ApiError> {
    match f.uuid("contact_id")? {
        Patch::Set(id) => Ok(id),
        _ => Err(ApiError::validation("contact_id", "is required")),
    }
}

/// POST /api/messages, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInput {
    pub contact_id: Uuid,
    pub body: Option<String>,
    pub media_key: Option<String>,
    pub channel: Option<Channel>,
}

impl TextInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["contact_id", "body", "media_key", "channel"])?;
        let input = Self {
            contact_id: contact_field(&f)?,
            body: match f.text("body", MAX_BODY_CHARS)? {
                Patch::Set(b) => Some(b),
                _ => None,
            },
            media_key: match f.text("media_key", 200)? {
                Patch::Set(k) => {
                    Some(parse_media_key(&k).map_err(|r| ApiError::validation("media_key", r))?)
                }
                _ => None,
            },
            channel: channel_field(&f)?,
        };
        if input.body.is_none() && input.media_key.is_none() {
            return Err(ApiError::validation(
                "body",
                "is required unless media_key is given",
            ));
        }
        Ok(input)
    }
}

/// What the checks need of a contact.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: Uuid,
    pub phone: String,
    pub full_name: Option<String>,
    pub channel: Channel,
}

/// Loads the contact and applies visibility, phone, channel and opt-out rules.
pub async fn recipient(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    channel: Option<Channel>,
) -> Result<Recipient, ApiError> {
    let stmt = db
        .prepare_cached(
            "select c.phone, c.full_name, c.owner_id, \
                    exists (select 1 from messages m where m.contact_id = c.id and m.wa_id is not null) \
             from contacts c where c.id = $1",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact lookup"))?;
    let row = db
        .query_opt(&stmt, &[&contact_id])
        .await
        .map_err(|e| ApiError::from_db(e, "loading the contact"))?
        .ok_or(ApiError::NotFound("contact"))?;
    let owner: Option<String> = row.get(2);
    if !who.may_read(owner.as_deref()) {
        return Err(ApiError::NotFound("contact"));
    }
    let phone: String = row
        .get::<_, Option<String>>(0)
        .ok_or_else(|| ApiError::validation("contact_id", "has no phone number"))?;
    let has_wa: bool = row.get(3);
    let channel = channel.unwrap_or(if has_wa {
        Channel::Whatsapp
    } else {
        Channel::Sms
    });
    let stmt = db
        .prepare_cached(
            "select exists (select 1 from opt_outs where contact_id = $1 and channel = $2)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the opt-out lookup"))?;
    let opted_out: bool = db
        .query_one(&stmt, &[&contact_id, &channel.as_str()])
        .await
        .map_err(|e| ApiError::from_db(e, "reading opt-outs"))?
        .get(0);
    if opted_out {
        return Err(ApiError::Refused {
            code: "opted_out",
            message: format!("The contact opted out of {}", channel.as_str()),
        });
    }
    Ok(Recipient {
        id: contact_id,
        phone,
        full_name: row.get(1),
        channel,
    })
}

/// When the contact last wrote to us on `channel`.
pub async fn last_inbound(
    db: &impl GenericClient,
    contact_id: Uuid,
    channel: Channel,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let stmt = db
        .prepare_cached(
            "select max(created_at) from messages \
             where contact_id = $1 and direction = 'in' and channel = $2",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the window lookup"))?;
    Ok(db
        .query_one(&stmt, &[&contact_id, &channel.as_str()])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the last inbound message"))?
        .get(0))
}

/// Whether free text may go out now, given the last inbound message.
pub fn window_open(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_inbound.is_some_and(|at| now - at < WINDOW)
}

/// A message ready to be stored.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub contact_id: Uuid,
    pub channel: Channel,
    pub body: Option<&'a str>,
    pub media_key: Option<&'a str>,
    pub template_sid: Option<&'a str>,
    /// `ContentVariables` of a template message.
    pub variables: Option<&'a Value>,
}

/// POST /api/messages: checks, then stores and enqueues (202 with the message).
pub async fn queue_text(
    db: &impl GenericClient,
    who: &Principal,
    input: TextInput,
) -> Result<Done, ApiError> {
    let to = recipient(db, who, input.contact_id, input.channel).await?;
    if to.channel == Channel::Whatsapp
        && !window_open(last_inbound(db, to.id, to.channel).await?, Utc::now())
    {
        return Err(ApiError::Refused {
            code: "window_closed",
            message: "The WhatsApp 24-hour window is closed: send a template".into(),
        });
    }
    let out = Outgoing {
        contact_id: to.id,
        channel: to.channel,
        body: input.body.as_deref(),
        media_key: input.media_key.as_deref(),
        template_sid: None,
        variables: None,
    };
    insert(db, who, &out).await
}

/// Stores the message `queued` and writes its send job and a `message_out`
/// timeline entry; all in the caller's transaction.
pub async fn insert(
    db: &impl GenericClient,
    who: &Principal,
    out: &Outgoing<'_>,
) -> Result<Done, ApiError> {
    let stmt = db
        .prepare_cached(
            "insert into messages (direction, channel, contact_id, body, status, media_key, num_media, template_sid) \
             values ('out', $1, $2, $3, 'queued', $4, $5, $6) \
             returning id, direction, channel, contact_id, body, provider_sid, status, error_code, \
                       error_message, num_media, template_sid, media_key, created_at, updated_at",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the message insert"))?;
    let num_media: i32 = out.media_key.is_some().into();
    let row = db
        .query_one(
            &stmt,
            &[
                &out.channel.as_str(),
                &out.contact_id,
                &out.body,
                &out.media_key,
                &num_media,
                &out.template_sid,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "storing the outbound message"))?;
    let id: Uuid = row.get(0);
    if let Some(vars) = out.variables {
        store::save_variables(db, id, vars).await?;
    }
    let stmt = db
        .prepare_cached(
            "insert into activities (type, contact_id, body, metadata, actor) \
             values ('message_out', $1, $2, $3, $4)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the activity insert"))?;
    let metadata = json!({"message_id": id, "channel": out.channel.as_str()});
    db.execute(
        &stmt,
        &[&out.contact_id, &out.body, &metadata, &who.actor()],
    )
    .await
    .map_err(|e| ApiError::from_db(e, "logging the outbound message"))?;
    let job = Job::SendMessage(SendMessage {
        v: 1,
        message_id: id,
    });
    let outbox_id = jobs::enqueue(db, &job)
        .await
        .map_err(ApiError::Unexpected)?;
    Ok(Done {
        status: 202,
        body: record(&row),
        enqueued: vec![outbox_id],
    })
}

/// The message as the API shows it.
pub fn record(row: &Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>(0),
        "direction": row.get::<_, String>(1),
        "channel": row.get::<_, String>(2),
        "contact_id": row.get::<_, Uuid>(3),
        "body": row.get::<_, Option<String>>(4),
        "provider_sid": row.get::<_, Option<String>>(5),
        "status": row.get::<_, String>(6),
        "error_code": row.get::<_, Option<i32>>(7),
        "error_message": row.get::<_, Option<String>>(8),
        "num_media": row.get::<_, i32>(9),
        "template_sid": row.get::<_, Option<String>>(10),
        "media_key": row.get::<_, Option<String>>(11),
        "created_at": row.get::<_, DateTime<Utc>>(12),
        "updated_at": row.get::<_, DateTime<Utc>>(13),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_open_for_24_hours_after_the_last_inbound_message() {
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        assert!(!window_open(None, now));
        assert!(window_open(Some(now - Duration::hours(23)), now));
        assert!(!window_open(Some(now - Duration::hours(24)), now));
    }

    #[test]
    fn media_keys_are_only_those_upload_url_hands_out() {
        let ok = "uploads/0192f0c8-7a00-7000-8000-000000000001.jpg";
        assert_eq!(parse_media_key(ok).unwrap(), ok);
        for bad in [
            "uploads/../etc/passwd",
            "media/0192f0c8-7a00-7000-8000-000000000001.jpg",
            "uploads/0192f0c8-7a00-7000-8000-000000000001",
            "uploads/0192f0c8-7a00-7000-8000-000000000001.j/g",
        ] {
            assert!(parse_media_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_message_needs_a_body_or_media() {
        let parse = |v: Value| TextInput::parse(v.as_object().unwrap().clone());
        let id = "0192f0c8-7a00-7000-8000-000000000001";
        assert!(parse(json!({"contact_id": id})).is_err());
        assert!(parse(json!({"contact_id": id, "body": "hi", "channel": "fax"})).is_err());
        let ok = parse(json!({"contact_id": id, "body": " hi "})).unwrap();
        assert_eq!((ok.body.as_deref(), ok.channel), (Some("hi"), None));
    }
}
