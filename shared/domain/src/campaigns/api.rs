//! The repositories behind the Campaigns API (`functions/crm-campaigns`):
//! campaigns and their state changes, templates, segments, channels, the
//! delivery ledger pages, opt-outs and the module switch. Every write runs
//! in the caller's transaction with its audit entry (ids and counts only).

pub mod campaigns;
pub mod channels;
pub mod compliance;
pub mod segments;
pub mod templates;

use crate::{
    crm::ApiError,
    db::{DbFault, classify},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The channels a campaign can use (the `channels.name` CHECK).
pub const CHANNELS: &[&str] = &["whatsapp", "sms", "email", "webhook"];

/// A database error of this module: its own constraints become caller
/// errors naming the field, the rest goes through [`ApiError::from_db`].
pub fn db_err(err: tokio_postgres::Error, context: &'static str) -> ApiError {
    match classify(&err) {
        DbFault::UniqueViolation {
            constraint: Some(c),
        } => match c.as_str() {
            "segments_name_unique" => {
                ApiError::conflict("name", "is already used by another segment")
            }
            "message_templates_content_sid_key" => {
                ApiError::conflict("content_sid", "is already used by another template")
            }
            _ => ApiError::from_db(err, context),
        },
        DbFault::ForeignKeyViolation {
            constraint: Some(c),
        } => match c.as_str() {
            "campaigns_segment_id_fkey" => ApiError::Refused {
                code: "segment_in_use",
                message: "The segment is used by a campaign".into(),
            },
            "campaigns_template_id_fkey" => ApiError::Refused {
                code: "template_in_use",
                message: "The template is used by a campaign".into(),
            },
            _ => ApiError::from_db(err, context),
        },
        _ => ApiError::from_db(err, context),
    }
}

/// An id from a path segment; anything else is a 404 for `what`.
pub fn path_id(raw: Option<&&str>, what: &'static str) -> Result<Uuid, ApiError> {
    raw.and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(ApiError::NotFound(what))
}

/// Opaque keyset cursor: base64url of `<tag>|<µs>|<uuid>` (a `created_at` and an id).
pub fn encode_cursor(tag: &str, at: DateTime<Utc>, id: Uuid) -> String {
    B64.encode(format!("{tag}|{}|{}", at.timestamp_micros(), id.simple()))
}

pub fn decode_cursor(tag: &str, raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || ApiError::validation("cursor", "is not a valid cursor");
    let text = B64
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let parts: Vec<&str> = text.split('|').collect();
    if parts.len() != 3 || parts[0] != tag {
        return Err(invalid());
    }
    let at = parts[1]
        .parse::<i64>()
        .ok()
        .and_then(crate::crm::cursor::cursor_instant)
        .ok_or_else(invalid)?;
    let id = Uuid::try_parse(parts[2]).map_err(|_| invalid())?;
    Ok((at, id))
}

/// Opaque cursor over an id-ordered page (the ledger): base64url of `<tag>|<uuid>`.
pub fn encode_id_cursor(tag: &str, id: Uuid) -> String {
    B64.encode(format!("{tag}|{}", id.simple()))
}

pub fn decode_id_cursor(tag: &str, raw: &str) -> Result<Uuid, ApiError> {
    let invalid = || ApiError::validation("cursor", "is not a valid cursor");
    let text = B64
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    match text.split_once('|') {
        Some((t, id)) if t == tag => Uuid::try_parse(id).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_instants_are_refused() {
        let raw = B64.encode(format!("cp|{}|{}", i64::MAX / 2, Uuid::nil().simple()));
        assert!(decode_cursor("cp", &raw).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_tags() {
        let at = DateTime::from_timestamp_micros(1_795_183_513_123_456).unwrap();
        let id = Uuid::now_v7();
        let c = encode_cursor("k1", at, id);
        assert_eq!(decode_cursor("k1", &c).unwrap(), (at, id));
        assert!(decode_cursor("s1", &c).is_err());
        let d = encode_id_cursor("l1", id);
        assert_eq!(decode_id_cursor("l1", &d).unwrap(), id);
        assert_eq!(
            decode_id_cursor("l1", "nope").unwrap_err().body()["field"],
            "cursor"
        );
    }
}
