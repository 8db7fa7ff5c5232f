//! Reading fields out of untrusted JSON payloads: every accessor names the
//! field in its error, so a caller learns exactly what to fix (422).

use crate::{
    db::webhook_events::Seen,
    error::WebhookError,
    signature::{AuthError, Verified},
    types::{EmailAddress, IdempotencyKey, PayloadHash},
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The body must be `application/json` (parameters such as charset allowed).
pub fn require_json(content_type: Option<&str>) -> Result<(), WebhookError> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(WebhookError::UnsupportedMediaType {
            expected: "application/json",
        })
    }
}

/// A string field; absent, null or blank is `None`; another JSON type is a 422 naming the field.
pub fn text<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v str>, WebhookError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(WebhookError::validation(field, "must be a string")),
    }
}

pub fn object<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'v Map<String, Value>, WebhookError> {
    match obj.get(key) {
        Some(Value::Object(o)) => Ok(o),
        None | Some(Value::Null) => Err(WebhookError::validation(field, "is required")),
        Some(_) => Err(WebhookError::validation(field, "must be an object")),
    }
}

pub fn email(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<EmailAddress, WebhookError> {
    let raw =
        text(obj, key, field)?.ok_or_else(|| WebhookError::validation(field, "is required"))?;
    EmailAddress::parse(raw).map_err(|reason| WebhookError::validation(field, reason))
}

pub fn timestamp(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<DateTime<Utc>>, WebhookError> {
    text(obj, key, field)?
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| WebhookError::validation(field, "must be an RFC 3339 timestamp"))
        })
        .transpose()
}

/// The one rule for U+0000 in untrusted text (docs/security.md, "NUL"):
/// PostgreSQL cannot store it in `text` or `jsonb`, so it is removed from
/// every string and object key of a body (JSON webhooks, API bodies, the
/// Twilio form, query strings) at the edge, before hashing or validation.
pub fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) => strip_nul_str(s),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (mut k, v) in old {
                    strip_nul_str(&mut k);
                    map.insert(k, v);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// [`strip_nul`] for one string.
pub fn strip_nul_str(s: &mut String) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
    }
}

/// A web address a person may click: `http://` or `https://` (or a bare
/// host such as `acme.com.br`, read as https) with a host that has a dot,
/// no whitespace, no credentials. `javascript:`, `data:` and the like never
/// pass.
pub fn is_web_address(raw: &str) -> bool {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let lower = raw.to_ascii_lowercase();
    let rest = match lower.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(_) => return false,
        // No scheme: a bare host, but nothing that looks like `scheme:`.
        None if lower.contains(':')
            && !lower
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("")
                .contains('.') =>
        {
            return false;
        }
        None => lower.as_str(),
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host_port.contains('@') {
        return false;
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

/// At most `max` characters, cut on a character boundary.
pub fn clip(s: impl AsRef<str>, max: usize) -> String {
    let s = s.as_ref();
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s.to_string(),
    }
}

/// Size (413) then authenticity (401) of a raw webhook body, without the
/// database: what every webhook handler runs before it takes a connection.
/// A refusal is noted as a log line (`webhook_events::note_unauthenticated`).
pub fn authenticate<'b>(
    source: crate::db::webhook_events::Source,
    body: &'b [u8],
    limit: usize,
    check: impl FnOnce(&'b [u8]) -> Result<Verified<&'b [u8]>, AuthError>,
) -> Result<(), WebhookError> {
    let outcome = if body.len() > limit {
        Err(WebhookError::PayloadTooLarge { limit })
    } else {
        check(body).map(drop).map_err(WebhookError::Unauthorized)
    };
    if let Err(err) = &outcome {
        crate::db::webhook_events::note_unauthenticated(source, err);
    }
    outcome
}

/// A JSON webhook body that passed the checks every JSON webhook runs.
pub struct OpenedJson {
    pub payload: Value,
    pub hash: PayloadHash,
    /// The `Idempotency-Key` header, when the caller sent one.
    pub header_key: Option<IdempotencyKey>,
}

/// The edge checks shared by the JSON webhooks, in this order: size (413),
/// authenticity on the raw bytes (401; first, so an unauthenticated caller
/// learns nothing about its other mistakes), the `Idempotency-Key` header
/// (422), content type (415), JSON (400). What is learnt goes into `seen`
/// for the receipt.
pub fn open_json<'b>(
    body: &'b [u8],
    limit: usize,
    authenticate: impl FnOnce(&'b [u8]) -> Result<Verified<&'b [u8]>, AuthError>,
    idempotency_header: Option<&str>,
    content_type: Option<&str>,
    seen: &mut Seen,
) -> Result<OpenedJson, WebhookError> {
    if body.len() > limit {
        return Err(WebhookError::PayloadTooLarge { limit });
    }
    let body = authenticate(body)
        .map_err(WebhookError::Unauthorized)?
        .into_inner();
    let header_key = idempotency_header
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|r| WebhookError::validation("Idempotency-Key", r))
        })
        .transpose()?;
    seen.key = header_key.clone();
    require_json(content_type)?;
    let mut payload: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("body is not valid JSON: {e}")))?;
    strip_nul(&mut payload);
    let hash = PayloadHash::of_json(&payload);
    seen.hash = Some(hash.clone());
    Ok(OpenedJson {
        payload,
        hash,
        header_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_must_be_json_with_optional_parameters() {
        assert!(require_json(Some("application/json")).is_ok());
        assert!(require_json(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(require_json(Some("text/plain")).is_err());
        assert!(require_json(None).is_err());
    }

    #[test]
    fn nul_is_stripped_from_every_string_and_key() {
        let mut v: Value = serde_json::from_str(
            r#"{"a\u0000b": ["x\u0000", {"n": "\u0000\u0000"}], "t": "ok", "k": 1}"#,
        )
        .unwrap();
        strip_nul(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"ab": ["x", {"n": ""}], "t": "ok", "k": 1})
        );
    }

    #[test]
    fn web_addresses_are_http_or_https_with_a_host() {
        for ok in [
            "https://acme.com",
            "http://acme.com.br/x?y=1",
            "acme.com",
            "www.acme.io:8080/p",
        ] {
            assert!(is_web_address(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript://acme.com/%0aalert(1)",
            "data:text/html,x",
            "https://",
            "https://user:pw@acme.com",
            "ftp://acme.com",
            "acme",
            "https://acme .com",
        ] {
            assert!(!is_web_address(bad), "{bad}");
        }
    }

    #[test]
    fn clip_cuts_on_character_boundaries() {
        assert_eq!(clip("çağrı", 3), "çağ");
        assert_eq!(clip("ab", 5), "ab");
    }
}
