//! The Cal.com booking webhook: authenticate the raw bytes
//! (`X-Cal-Signature-256`), parse the trigger, and run the booking flow in
//! one transaction (`flow`), keyed by `calcom:<uid>:<triggerEvent>` unless an
//! `Idempotency-Key` header names the event.
//!
//! Checks run in the Instantly webhook's order and give its answers: size
//! (413), signature (401), content type (415), JSON (400), fields (422).
//! Every refusal is recorded in `webhook_events`; triggers other than
//! BOOKING_CREATED / _RESCHEDULED / _CANCELLED are recorded and answered
//! `"ignored"`.

pub mod flow;
pub mod payload;
pub mod store;

use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Receipt, Seen, Source},
    },
    error::WebhookError,
    fields::{OpenedJson, open_json},
    signature::Verifier,
    types::{IdempotencyKey, PayloadHash},
};
pub use payload::{Booking, Event, Trigger};
use serde_json::{Value, json};

/// Larger bodies are refused with 413 before they are hashed or parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the HTTP edge extracted from the request; nothing here is trusted yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inbound<'a> {
    pub content_type: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// `X-Cal-Signature-256`: lowercase hex HMAC-SHA256 of the raw body, or `no-secret-provided`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// The checks that need no database, run by the handler before it takes a
/// connection: size (413) and signature (401); logged, never written.
pub fn authenticate(verifier: &Verifier, req: &Inbound<'_>) -> Result<(), WebhookError> {
    crate::fields::authenticate(Source::Calcom, req.body, MAX_BODY_BYTES, |b| {
        verifier.verify_hex_hmac(b, req.signature)
    })
}

/// Runs the webhook. Caller faults are recorded as rejections, our faults as
/// failures (retryable under the same key); both are then returned.
pub async fn receive<C: GenericClient>(
    db: &mut C,
    verifier: &Verifier,
    req: Inbound<'_>,
) -> Result<Value, WebhookError> {
    let mut seen = Seen::default();
    let outcome = accept(db, verifier, &req, &mut seen).await;
    if let Err(err) = &outcome {
        // The flow's transaction is gone by now (rolled back), so this lands on its own.
        webhook_events::record_refusal(&*db, Source::Calcom, req.body, &seen, err).await;
    }
    outcome
}

async fn accept<C: GenericClient>(
    db: &mut C,
    verifier: &Verifier,
    req: &Inbound<'_>,
    seen: &mut Seen,
) -> Result<Value, WebhookError> {
    let OpenedJson {
        payload,
        hash,
        header_key,
    } = open_json(
        req.body,
        MAX_BODY_BYTES,
        |b| verifier.verify_hex_hmac(b, req.signature),
        req.idempotency_key,
        req.content_type,
        seen,
    )?;
    seen.event_type = payload::trigger_name(&payload);
    let event = payload::parse(&payload)?;
    // The `Idempotency-Key` header is not signed: a booking's uid and
    // trigger are its key whatever the header says; the header may only
    // name an event without a uid (issue 13).
    let key = match (event.uid(), header_key) {
        (None, Some(k)) => k,
        _ => natural_key(&event, &hash)?,
    };
    seen.key = Some(key.clone());
    seen.payload = Some(payload.clone());

    let receipt = match &event {
        Event::Other { trigger, .. } => {
            let result =
                json!({"status": "ignored", "trigger": trigger, "idempotency_key": key.as_str()});
            webhook_events::record_ignored(
                &*db,
                Source::Calcom,
                key.as_str(),
                hash.as_str(),
                trigger,
                &payload,
                &result,
            )
            .await?
        }
        Event::Booking(booking) => flow::apply(db, &key, &hash, booking, &payload).await?,
    };
    match receipt {
        Receipt::New { result, .. } => Ok(result),
        Receipt::Seen { result, .. } => Err(WebhookError::Duplicate { first: result }),
        Receipt::Mismatch => Err(WebhookError::KeyReused),
        Receipt::InFlight => Err(WebhookError::InFlight),
    }
}

/// `calcom:<uid>:<triggerEvent>`; a trigger that names no booking (PING) is keyed by its body's hash.
pub fn natural_key(event: &Event, hash: &PayloadHash) -> Result<IdempotencyKey, WebhookError> {
    let raw = match event.uid() {
        Some(uid) => format!("calcom:{uid}:{}", event.trigger()),
        None => format!("sha256:{}", hash.as_str()),
    };
    IdempotencyKey::parse(&raw).map_err(|r| WebhookError::validation("payload.uid", r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Secret,
        signature::{AuthError, hmac_sha256_hex},
    };

    // Known answer, computed independently (Python's hmac module) for the sample secret:
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"test-calcom-secret",
    //   b"{\"triggerEvent\":\"PING\",\"createdAt\":\"2026-11-20T14:00:00.000Z\",\"payload\":{}}",hashlib.sha256).hexdigest())'
    const KAT_BODY: &[u8] =
        br#"{"triggerEvent":"PING","createdAt":"2026-11-20T14:00:00.000Z","payload":{}}"#;
    const KAT_SIG: &str = "ead84c89d799f10b4dfca376f31127b65d6dc522e277165827406abb53b98852";

    fn verifier() -> Verifier {
        Verifier::Secret(Secret::new("test-calcom-secret").unwrap())
    }

    #[test]
    fn cal_signature_matches_the_known_answer() {
        assert_eq!(hmac_sha256_hex(b"test-calcom-secret", KAT_BODY), KAT_SIG);
        assert!(verifier().verify_hex_hmac(KAT_BODY, Some(KAT_SIG)).is_ok());
    }

    #[test]
    fn cal_signature_is_refused_over_other_bytes_or_as_the_no_secret_placeholder() {
        let v = verifier();
        let mut other = KAT_BODY.to_vec();
        other[2] = b'X';
        assert_eq!(
            v.verify_hex_hmac(&other, Some(KAT_SIG)).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_hex_hmac(KAT_BODY, Some("no-secret-provided"))
                .unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_hex_hmac(KAT_BODY, Some(&format!("sha256={KAT_SIG}")))
                .unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_hex_hmac(KAT_BODY, None).unwrap_err(),
            AuthError::Missing
        );
        assert!(
            Verifier::Bypass
                .verify_hex_hmac(KAT_BODY, Some("no-secret-provided"))
                .is_ok()
        );
    }

    #[test]
    fn natural_key_is_uid_and_trigger_or_the_body_hash() {
        let hash = PayloadHash::of_bytes(b"x");
        let ended = Event::Other {
            trigger: "MEETING_ENDED".into(),
            uid: Some("abc".into()),
        };
        assert_eq!(
            natural_key(&ended, &hash).unwrap().as_str(),
            "calcom:abc:MEETING_ENDED"
        );
        let ping = Event::Other {
            trigger: "PING".into(),
            uid: None,
        };
        assert_eq!(
            natural_key(&ping, &hash).unwrap().as_str(),
            format!("sha256:{}", hash.as_str())
        );
    }
}
