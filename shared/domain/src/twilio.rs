//! The Twilio messaging webhook (WhatsApp and SMS): authenticate the form
//! (`X-Twilio-Signature` over the public URL and the sorted parameters),
//! tell an inbound message from a status callback, and run its flow in one
//! transaction keyed by the `MessageSid` (plus the status for callbacks).
//!
//! Checks run in the other webhooks' order: size (413), signature (401),
//! content type (415), form decoding (400), fields (422). Refusals after
//! authentication are recorded in `webhook_events` as they are for the
//! others; refusals before it are a log line (docs/security.md). Once
//! authenticated, Twilio is answered 200 with empty TwiML — replays
//! included, since Twilio treats any other status as a failed delivery.

pub mod flow;
pub mod form;
pub mod signature;
pub mod status;
pub mod store;

use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Receipt, Seen, Source},
    },
    error::WebhookError,
    phone::PhoneRegion,
    signature::Verifier,
    types::{IdempotencyKey, PayloadHash},
};
pub use form::{Channel, Event, Form};
use serde_json::{Value, json};

/// Twilio's bodies are small; anything larger is not Twilio.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The answer to every authenticated call.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// What the HTTP edge extracted from the request; nothing here is trusted yet.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub content_type: Option<&'a str>,
    /// `X-Twilio-Signature`.
    pub signature: Option<&'a str>,
    /// The URL Twilio called: `PUBLIC_BASE_URL` + path + `?query`.
    pub url: &'a str,
    pub body: &'a [u8],
}

/// The checks that need no database, run by the handler before it takes a
/// connection: size (413) and signature (401); logged, never written.
pub fn authenticate(verifier: &Verifier, req: &Inbound<'_>) -> Result<(), WebhookError> {
    crate::fields::authenticate(Source::Twilio, req.body, MAX_BODY_BYTES, |b| {
        verifier.verify_twilio(req.url, b, req.signature)
    })
}

/// Runs the webhook. `Ok` carries the receipt's answer (ids, for logs; the
/// caller answers TwiML); refusals are recorded, then returned.
pub async fn receive<C: GenericClient>(
    db: &mut C,
    verifier: &Verifier,
    region: PhoneRegion,
    req: Inbound<'_>,
) -> Result<Value, WebhookError> {
    let mut seen = Seen::default();
    let outcome = accept(db, verifier, region, &req, &mut seen).await;
    if let Err(err) = &outcome {
        webhook_events::record_refusal(&*db, Source::Twilio, req.body, &seen, err).await;
    }
    outcome
}

async fn accept<C: GenericClient>(
    db: &mut C,
    verifier: &Verifier,
    region: PhoneRegion,
    req: &Inbound<'_>,
    seen: &mut Seen,
) -> Result<Value, WebhookError> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let body = verifier
        .verify_twilio(req.url, req.body, req.signature)
        .map_err(WebhookError::Unauthorized)?
        .into_inner();
    form::require_form(req.content_type)?;
    let form = Form::parse(body)?;
    let payload = form.to_json();
    let hash = PayloadHash::of_json(&payload);
    seen.hash = Some(hash.clone());
    let event = match form::classify(&form, region) {
        Ok(event) => event,
        // Authenticated but unusable (e.g. an alphanumeric sender): Twilio
        // must get 200, or it retries and alerts forever. Kept as `ignored`
        // with the reason, so it shows up in the diagnostics.
        Err(WebhookError::Validation { field, reason }) => {
            let key = IdempotencyKey::parse(&format!("twilio:unusable:{}", hash.as_str()))
                .expect("a hash is a valid key");
            let result = json!({"status": "ignored", "kind": "unusable", "reason": format!("{field} {reason}")});
            let receipt = webhook_events::record_ignored(
                &*db,
                Source::Twilio,
                key.as_str(),
                hash.as_str(),
                "unusable",
                &payload,
                &result,
            )
            .await?;
            return match receipt {
                Receipt::InFlight => Err(WebhookError::InFlight),
                _ => Ok(result),
            };
        }
        Err(other) => return Err(other),
    };
    seen.event_type = Some(event.kind().to_string());
    let key = natural_key(&event, &hash)?;
    seen.key = Some(key.clone());
    seen.payload = Some(payload.clone());

    let receipt = match &event {
        Event::Inbound(msg) => flow::inbound(db, &key, &hash, msg, &payload).await?,
        Event::Status(cb) => flow::status_callback(db, &key, &hash, cb, &payload).await?,
        Event::Other => {
            let result =
                json!({"status": "ignored", "kind": "other", "idempotency_key": key.as_str()});
            webhook_events::record_ignored(
                &*db,
                Source::Twilio,
                key.as_str(),
                hash.as_str(),
                "other",
                &payload,
                &result,
            )
            .await?
        }
    };
    match receipt {
        Receipt::New { result, .. } => Ok(result),
        Receipt::Seen { result, .. } => Ok(json!({"status": "duplicate", "first": result})),
        // Same SID and status, other parameters: the first delivery stands, as for a replay.
        Receipt::Mismatch => {
            tracing::warn!(
                idempotency_key = key.as_str(),
                "twilio redelivered a key with other parameters; the first delivery stands"
            );
            Ok(json!({"status": "duplicate", "mismatch": true}))
        }
        Receipt::InFlight => Err(WebhookError::InFlight),
    }
}

/// `twilio:in:<MessageSid>`, `twilio:status:<MessageSid>:<status>`; a call
/// that is neither is keyed by its parameters' hash.
pub fn natural_key(event: &Event, hash: &PayloadHash) -> Result<IdempotencyKey, WebhookError> {
    let raw = match event {
        Event::Inbound(m) => format!("twilio:in:{}", m.sid.as_str()),
        Event::Status(s) => format!("twilio:status:{}:{}", s.sid.as_str(), s.raw_status),
        Event::Other => format!("sha256:{}", hash.as_str()),
    };
    IdempotencyKey::parse(&raw).map_err(|r| WebhookError::validation("MessageSid", r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Secret, signature::AuthError};

    const URL: &str = "https://hub.example.com/api/twilio/webhook";
    const BODY: &[u8] = b"MessageSid=SM1&From=%2B905321234567&Body=Merhaba";

    #[test]
    fn the_verifier_checks_twilios_signature_over_url_and_form() {
        let v = Verifier::Secret(Secret::new("test-twilio-token").unwrap());
        let sig = signature::sign("test-twilio-token", URL, BODY);
        assert!(v.verify_twilio(URL, BODY, Some(&sig)).is_ok());
        assert!(
            v.verify_twilio(
                "https://hub.example.com:443/api/twilio/webhook",
                BODY,
                Some(&sig)
            )
            .is_ok()
        );
        assert_eq!(
            v.verify_twilio("https://evil.example/api/twilio/webhook", BODY, Some(&sig))
                .unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_twilio(URL, BODY, None).unwrap_err(),
            AuthError::Missing
        );
        assert!(Verifier::Bypass.verify_twilio(URL, BODY, None).is_ok());
    }

    #[test]
    fn keys_name_the_sid_and_for_callbacks_the_status() {
        let hash = PayloadHash::of_bytes(b"x");
        let form = Form::parse(b"MessageSid=SM9&MessageStatus=sent").unwrap();
        let event = form::classify(&form, PhoneRegion::default()).unwrap();
        assert_eq!(
            natural_key(&event, &hash).unwrap().as_str(),
            "twilio:status:SM9:sent"
        );
        let form = Form::parse(BODY).unwrap();
        let event = form::classify(&form, PhoneRegion::default()).unwrap();
        assert_eq!(
            natural_key(&event, &hash).unwrap().as_str(),
            "twilio:in:SM1"
        );
    }
}
