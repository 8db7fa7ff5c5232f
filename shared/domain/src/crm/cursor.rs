//! Opaque page cursors: base64url of `<kind>|<timestamp µs>|<id>[|<stage id>]`,
//! the sort key of the last row a page returned. Keyset pagination on
//! `(timestamp, id)` never repeats or skips a row whose key stays put,
//! whatever the page size, so the timestamp is always a `created_at`
//! (never changed), not an `updated_at`. Clients must treat cursors as
//! opaque. The kind tag carries a version: a cursor of an older sort order
//! (`d1`, deals by `updated_at`) is refused as invalid rather than read as
//! a key of another order.

use super::error::ApiError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// Deals of one board column, newest `created_at` first; carries the stage.
    Deals,
    /// Contacts, newest `created_at` first.
    Contacts,
    /// A contact's messages, newest `created_at` first.
    Messages,
    /// Conversations, newest last message first: the last message's
    /// `created_at` and the contact's id (`inbox::conversations`).
    Conversations,
    /// A contact's timeline, newest `occurred_at` first (set once, never changed).
    Activities,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Deals => "d2",
            CursorKind::Contacts => "c1",
            CursorKind::Messages => "m1",
            CursorKind::Conversations => "v1",
            CursorKind::Activities => "a1",
        }
    }
}

/// The instant a cursor carries, when PostgreSQL can compare with it: years
/// 1 to 9999. Anything else (chrono reads ±262,143 years, PostgreSQL does
/// not) is not a cursor this API issued: a 422 `cursor`, never a 500.
pub fn cursor_instant(micros: i64) -> Option<DateTime<Utc>> {
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in µs since the epoch.
    const MIN: i64 = -62_135_596_800_000_000;
    const MAX: i64 = 253_402_300_799_999_999;
    (MIN..=MAX)
        .contains(&micros)
        .then(|| DateTime::<Utc>::from_timestamp_micros(micros))
        .flatten()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
    /// The board column (deal cursors only).
    pub stage_id: Option<Uuid>,
}

impl Cursor {
    pub fn encode(&self, kind: CursorKind) -> String {
        let mut raw = format!(
            "{}|{}|{}",
            kind.tag(),
            self.at.timestamp_micros(),
            self.id.simple()
        );
        if let Some(stage) = self.stage_id {
            raw.push('|');
            raw.push_str(&stage.simple().to_string());
        }
        B64.encode(raw)
    }

    /// A 422 naming `cursor` for anything this API did not issue (for this kind).
    pub fn decode(raw: &str, kind: CursorKind) -> Result<Self, ApiError> {
        let invalid = || ApiError::validation("cursor", "is not a valid cursor");
        let bytes = B64.decode(raw.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.split('|').collect();
        let expected = if kind == CursorKind::Deals { 4 } else { 3 };
        if parts.len() != expected || parts[0] != kind.tag() {
            return Err(invalid());
        }
        let micros: i64 = parts[1].parse().map_err(|_| invalid())?;
        let at = cursor_instant(micros).ok_or_else(invalid)?;
        let id = Uuid::try_parse(parts[2]).map_err(|_| invalid())?;
        let stage_id = match parts.get(3) {
            Some(s) => Some(Uuid::try_parse(s).map_err(|_| invalid())?),
            None => None,
        };
        Ok(Self { at, id, stage_id })
    }
}

/// A cursor whose tie-breaker is a text key instead of a UUID (a C2S lead
/// id): base64url of `<tag>|<timestamp µs>|<key>`, same codec and the same
/// 422 for anything this API did not issue. The key is last, so it may hold `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCursor {
    pub at: DateTime<Utc>,
    pub key: String,
}

impl KeyCursor {
    /// C2S leads, newest `created_at` first (`GET /api/v1/c2s/leads`).
    pub const C2S_LEADS: &'static str = "l1";

    pub fn encode(&self, tag: &str) -> String {
        B64.encode(format!("{tag}|{}|{}", self.at.timestamp_micros(), self.key))
    }

    pub fn decode(raw: &str, tag: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::validation("cursor", "is not a valid cursor");
        let bytes = B64.decode(raw.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, '|');
        if parts.next() != Some(tag) {
            return Err(invalid());
        }
        let micros: i64 = parts
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or_else(invalid)?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let key = parts.next().filter(|k| !k.is_empty()).ok_or_else(invalid)?;
        Ok(Self {
            at,
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_microsecond_precision() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_795_183_513_123_456).unwrap(),
            id: Uuid::now_v7(),
            stage_id: Some(Uuid::now_v7()),
        };
        let raw = c.encode(CursorKind::Deals);
        assert!(
            raw.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
        assert_eq!(Cursor::decode(&raw, CursorKind::Deals).unwrap(), c);
        let c = Cursor {
            stage_id: None,
            ..c
        };
        assert_eq!(
            Cursor::decode(&c.encode(CursorKind::Contacts), CursorKind::Contacts).unwrap(),
            c
        );
    }

    #[test]
    fn out_of_range_instants_are_not_cursors() {
        // Issue 13: chrono reads these, PostgreSQL answers "timestamp out of range".
        for micros in [
            i64::MIN,
            -8_210_298_412_800_000_000,
            8_210_298_412_800_000_000,
        ] {
            for kind in [CursorKind::Contacts, CursorKind::Messages] {
                let raw = B64.encode(format!("{}|{micros}|{}", kind.tag(), Uuid::nil().simple()));
                assert!(Cursor::decode(&raw, kind).is_err(), "{micros}");
            }
        }
        assert!(cursor_instant(0).is_some());
    }

    #[test]
    fn foreign_or_tampered_cursors_are_refused_naming_the_field() {
        let c = Cursor {
            at: Utc::now(),
            id: Uuid::now_v7(),
            stage_id: None,
        };
        let contacts = c.encode(CursorKind::Contacts);
        for bad in [
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",
            contacts.as_str(),
            &B64.encode("d2|x|y|z"),
            // A deal cursor of the former `updated_at` order.
            &B64.encode(format!(
                "d1|{}|{}|{}",
                c.at.timestamp_micros(),
                c.id.simple(),
                c.id.simple()
            )),
        ] {
            let e = Cursor::decode(bad, CursorKind::Deals).unwrap_err();
            assert_eq!(e.body()["field"], "cursor", "{bad}");
        }
    }

    #[test]
    fn key_cursors_round_trip_and_refuse_other_tags() {
        let c = KeyCursor {
            at: DateTime::from_timestamp_micros(1_795_183_513_123_456).unwrap(),
            key: "lead|with|bars".into(),
        };
        let raw = c.encode(KeyCursor::C2S_LEADS);
        assert_eq!(KeyCursor::decode(&raw, KeyCursor::C2S_LEADS).unwrap(), c);
        for bad in [raw.as_str(), "", "!!!", &B64.encode("l1|12|")] {
            let tag = if bad == raw {
                "x1"
            } else {
                KeyCursor::C2S_LEADS
            };
            assert_eq!(
                KeyCursor::decode(bad, tag).unwrap_err().body()["field"],
                "cursor"
            );
        }
    }
}
