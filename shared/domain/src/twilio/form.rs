//! The Twilio form body: strict decoding, then what kind of call it is —
//! an inbound message or a delivery-status callback — as domain types.

use super::status::MessageStatus;
use crate::{error::WebhookError, phone::PhoneE164, phone::PhoneRegion};
use serde_json::{Map, Value};

/// The decoded parameters, in the order sent (names may repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// `application/x-www-form-urlencoded`, strictly: a bad `%` escape or
    /// bytes that are not UTF-8 once decoded are refused (400), not replaced.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let mut out = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            out.push((decode(name)?, decode(value)?));
        }
        Ok(Self(out))
    }

    /// The first value of `name`; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The parameters as a JSON object (a repeated name becomes an array):
    /// what is kept of a raw callback, and what the payload hash covers.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in &self.0 {
            match out.get_mut(k) {
                None => {
                    out.insert(k.clone(), Value::String(v.clone()));
                }
                Some(Value::Array(values)) => values.push(Value::String(v.clone())),
                Some(first) => {
                    let first = first.take();
                    out.insert(
                        k.clone(),
                        Value::Array(vec![first, Value::String(v.clone())]),
                    );
                }
            }
        }
        Value::Object(out)
    }
}

fn decode(raw: &[u8]) -> Result<String, WebhookError> {
    let bad = |what: &str| WebhookError::MalformedForm(format!("form body {what}"));
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("has a bad %-escape"))?;
                bytes.push(hex);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    let mut text = String::from_utf8(bytes).map_err(|_| bad("is not UTF-8"))?;
    // U+0000 is removed at the edge, as for every text field (docs/security.md).
    crate::fields::strip_nul_str(&mut text);
    Ok(text)
}

/// The body must be a form (parameters such as charset allowed).
pub fn require_form(content_type: Option<&str>) -> Result<(), WebhookError> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(WebhookError::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Whatsapp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
        }
    }

    /// `whatsapp:+90…` is WhatsApp; anything else is SMS. Returns the bare address.
    pub fn of_address(address: &str) -> (Self, &str) {
        match address.trim().split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("whatsapp") => {
                (Channel::Whatsapp, rest.trim())
            }
            _ => (Channel::Sms, address.trim()),
        }
    }
}

/// A Twilio message SID: `SM` (SMS/WhatsApp) or `MM` (MMS) and hex digits,
/// at most 34 characters in all (Twilio's are `SM` + 32 hex). `hello` is not one.
/// The local send sink's labelled SIDs (`SMlocal` + 32 hex, send-worker's
/// `sink_sid`) are accepted too, so status callbacks can be replayed against
/// `make run`; they still need a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSid(String);

impl MessageSid {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        let hex = raw
            .strip_prefix("SMlocal")
            .filter(|h| h.len() == 32)
            .or_else(|| raw.strip_prefix("SM"))
            .or_else(|| raw.strip_prefix("MM"));
        match hex {
            Some(h)
                if !h.is_empty() && h.len() <= 32 && h.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                Ok(Self(raw.to_string()))
            }
            _ => Err("is not a Twilio message SID (SM or MM and hex digits)"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub url: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub sid: MessageSid,
    pub channel: Channel,
    pub from: PhoneE164,
    pub wa_id: Option<String>,
    pub profile_name: Option<String>,
    pub body: Option<String>,
    pub media: Vec<Media>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    pub sid: MessageSid,
    /// As sent, lower-cased (kept even when it is not a status we know).
    pub raw_status: String,
    pub status: Option<MessageStatus>,
    pub error_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Inbound(InboundMessage),
    Status(StatusCallback),
    /// Authenticated, but neither: recorded and answered like the others.
    Other,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Inbound(_) => "message_in",
            Event::Status(_) => "message_status",
            Event::Other => "other",
        }
    }
}

/// A media URL as Twilio sends it: `https://` and a host, nothing else
/// (the media worker fetches only allowed hosts; this refuses junk before
/// anything is written).
fn is_media_url(raw: &str) -> bool {
    let Some(rest) = raw.trim().strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !host.contains('@')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Most media Twilio attaches to one message.
pub const MAX_MEDIA: usize = 10;

/// A status callback carries `MessageSid` + `MessageStatus` (or the legacy
/// `SmsStatus`) other than `received`; an inbound message carries `From`,
/// `MessageSid` and a `Body` or media.
pub fn classify(form: &Form, region: PhoneRegion) -> Result<Event, WebhookError> {
    let sid = form.get("MessageSid").or_else(|| form.get("SmsSid"));
    let status = form
        .get("MessageStatus")
        .or_else(|| form.get("SmsStatus"))
        .map(|s| s.trim().to_ascii_lowercase());
    let Some(sid) = sid else {
        return Ok(Event::Other);
    };
    let sid = MessageSid::parse(sid).map_err(|r| WebhookError::validation("MessageSid", r))?;
    if let Some(raw_status) = status.filter(|s| s != "received") {
        if raw_status.len() > 32
            || !raw_status
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-')
        {
            return Err(WebhookError::validation(
                "MessageStatus",
                "is not a status name",
            ));
        }
        let error_code = match form.get("ErrorCode").map(str::trim) {
            None => None,
            Some(code) => Some(
                code.parse::<i32>()
                    .map_err(|_| WebhookError::validation("ErrorCode", "must be a number"))?,
            ),
        };
        return Ok(Event::Status(StatusCallback {
            sid,
            status: MessageStatus::parse(&raw_status),
            raw_status,
            error_code,
        }));
    }
    let num_media = match form.get("NumMedia").map(str::trim) {
        None => 0,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_MEDIA)
            .ok_or_else(|| {
                WebhookError::validation("NumMedia", "must be a whole number up to 10")
            })?,
    };
    let body = form.get("Body").map(str::to_string);
    let Some(from) = form.get("From") else {
        return Ok(Event::Other);
    };
    if body.is_none() && num_media == 0 {
        return Ok(Event::Other);
    }
    let (channel, address) = Channel::of_address(from);
    let from = PhoneE164::parse_sender(address, region)
        .map_err(|r| WebhookError::validation("From", r))?;
    let media = (0..num_media)
        .map(|i| {
            let url = form
                .get(&format!("MediaUrl{i}"))
                .ok_or_else(|| WebhookError::validation(format!("MediaUrl{i}"), "is required"))?;
            if !is_media_url(url) {
                return Err(WebhookError::validation(
                    format!("MediaUrl{i}"),
                    "must be an https URL with a host",
                ));
            }
            Ok(Media {
                url: url.to_string(),
                content_type: form
                    .get(&format!("MediaContentType{i}"))
                    .map(str::to_string),
            })
        })
        .collect::<Result<Vec<_>, WebhookError>>()?;
    Ok(Event::Inbound(InboundMessage {
        sid,
        channel,
        from,
        wa_id: form.get("WaId").map(str::to_string),
        profile_name: form
            .get("ProfileName")
            .map(|n| crate::fields::clip(n.trim(), 120))
            .filter(|n| !n.is_empty()),
        body,
        media,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr() -> PhoneRegion {
        PhoneRegion::default()
    }

    fn classify_str(body: &str) -> Result<Event, WebhookError> {
        classify(&Form::parse(body.as_bytes()).unwrap(), tr())
    }

    #[test]
    fn form_decoding_is_strict() {
        let f = Form::parse(b"Body=Merhaba+d%C3%BCnya&From=%2B905321234567&Empty=&Flag").unwrap();
        assert_eq!(f.get("Body"), Some("Merhaba dünya"));
        assert_eq!(f.get("From"), Some("+905321234567"));
        assert_eq!(f.get("Empty"), None);
        assert!(matches!(
            Form::parse(b"Body=%ZZ"),
            Err(WebhookError::MalformedForm(_))
        ));
        assert!(matches!(
            Form::parse(b"Body=%C3"),
            Err(WebhookError::MalformedForm(_))
        ));
        assert!(matches!(
            Form::parse(b"Body=%4"),
            Err(WebhookError::MalformedForm(_))
        ));
    }

    #[test]
    fn repeated_names_become_arrays_in_json() {
        let f = Form::parse(b"a=1&b=2&a=3").unwrap();
        assert_eq!(f.to_json(), serde_json::json!({"a": ["1", "3"], "b": "2"}));
    }

    #[test]
    fn an_inbound_whatsapp_message_with_media() {
        let e = classify_str(
            "MessageSid=MM1&From=whatsapp%3A%2B905321234567&Body=&NumMedia=1&WaId=905321234567\
             &ProfileName=Ay%C5%9Fe&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fm&MediaContentType0=image%2Fjpeg&SmsStatus=received",
        )
        .unwrap();
        let Event::Inbound(m) = e else {
            panic!("{e:?}")
        };
        assert_eq!(m.channel, Channel::Whatsapp);
        assert_eq!(m.from.as_str(), "+905321234567");
        assert_eq!(m.body, None);
        assert_eq!(m.profile_name.as_deref(), Some("Ayşe"));
        assert_eq!(m.media.len(), 1);
        assert_eq!(m.media[0].content_type.as_deref(), Some("image/jpeg"));
    }

    #[test]
    fn a_status_callback_is_told_from_an_inbound_message() {
        let e = classify_str(
            "MessageSid=SM1&MessageStatus=Delivered&From=%2B905321234567&Body=x&ErrorCode=30003",
        )
        .unwrap();
        assert_eq!(
            e,
            Event::Status(StatusCallback {
                sid: MessageSid::parse("SM1").unwrap(),
                raw_status: "delivered".into(),
                status: Some(MessageStatus::Delivered),
                error_code: Some(30003),
            })
        );
        let e = classify_str("MessageSid=SM1&From=%2B905321234567&Body=hi").unwrap();
        assert!(matches!(e, Event::Inbound(m) if m.channel == Channel::Sms));
    }

    #[test]
    fn calls_that_are_neither_are_other_and_bad_fields_name_themselves() {
        assert_eq!(classify_str("CallSid=CA1&From=%2B1").unwrap(), Event::Other);
        assert_eq!(
            classify_str("MessageSid=SM1&From=%2B905321234567").unwrap(),
            Event::Other
        );
        let bad = |body: &str, field: &str| {
            assert!(
                matches!(classify_str(body), Err(WebhookError::Validation { field: f, .. }) if f == field),
                "{body}"
            );
        };
        bad("MessageSid=SM-1&Body=x&From=%2B905321234567", "MessageSid");
        // Issue 13: not a SID, not a media URL.
        bad("MessageSid=hello&Body=x&From=%2B905321234567", "MessageSid");
        bad(
            "MessageSid=SMlocalzz&Body=x&From=%2B905321234567",
            "MessageSid",
        );
        assert!(MessageSid::parse("SMlocal0123456789abcdef0123456789abcdef").is_ok());
        bad(
            "MessageSid=SM1&NumMedia=1&MediaUrl0=not-a-url&From=%2B905321234567",
            "MediaUrl0",
        );
        bad("MessageSid=SM1&Body=x&From=call+me", "From");
        bad(
            "MessageSid=SM1&NumMedia=two&From=%2B905321234567",
            "NumMedia",
        );
        bad(
            "MessageSid=SM1&NumMedia=1&From=%2B905321234567",
            "MediaUrl0",
        );
        bad(
            "MessageSid=SM1&MessageStatus=failed&ErrorCode=x",
            "ErrorCode",
        );
        bad("MessageSid=SM1&MessageStatus=sent%0A1", "MessageStatus");
    }

    proptest::proptest! {
        #[test]
        fn form_decoding_inverts_form_encoding(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,40}"), 0..8)) {
            let mut enc = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                enc.append_pair(k, v);
            }
            let form = Form::parse(enc.finish().as_bytes()).unwrap();
            // A pair with an empty name and value encodes as "=", which decodes back; nothing is lost.
            proptest::prop_assert_eq!(form.0, pairs);
        }

        #[test]
        fn form_decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Form::parse(&bytes);
        }
    }
}
