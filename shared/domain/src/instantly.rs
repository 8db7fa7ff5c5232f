//! The Instantly.ai reply webhook: authenticate the raw bytes, parse either
//! payload shape into a `Reply`, classify it, and run the whole flow in one
//! statement (`instantly_reply_ingest`, see migrations/V2).
//!
//! Shapes accepted:
//! - the seed's: `{event, campaign_id, lead{email, full_name, website},
//!   message{text, subject, received_at}, idempotency_key}`
//! - Instantly's own: a flat object with `event_type`, `timestamp`,
//!   `lead_email`, `reply_text`, `email_id`, … and the lead's fields merged in.
//!
//! Other Instantly event types are recorded and answered `"ignored"`.

use crate::fields::{OpenedJson, clip, email, object, open_json, text, timestamp};
use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Receipt, Seen, Source},
    },
    error::WebhookError,
    intent::{self, Intent},
    signature::Verifier,
    types::{EmailAddress, IdempotencyKey, PayloadHash},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Larger bodies are refused with 413 before they are hashed or parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const REPLY_EVENT: &str = "reply_received";

/// What the HTTP edge extracted from the request; nothing here is trusted yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inbound<'a> {
    pub content_type: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub x_signature: Option<&'a str>,
    pub x_webhook_secret: Option<&'a str>,
    pub body: &'a [u8],
}

/// A reply, validated and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub email: EmailAddress,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub website: Option<String>,
    pub text: String,
    pub subject: Option<String>,
    pub received_at: DateTime<Utc>,
    pub campaign_id: Option<String>,
    pub campaign_name: Option<String>,
    pub email_account: Option<String>,
    pub email_id: Option<String>,
    /// The payload's own idempotency key, when it has one (seed `idempotency_key`, or derived from the native payload).
    pub natural_key: Option<String>,
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Seed,
    Native,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Reply(Box<Reply>),
    /// A valid event of a type this flow does not act on.
    Other {
        event_type: String,
        natural_key: Option<String>,
    },
}

/// The checks that need no database, run by the handler before it takes a
/// connection: size (413) and signature (401). A refusal here is logged
/// (`webhook_events::note_unauthenticated`), never written.
pub fn authenticate(verifier: &Verifier, req: &Inbound<'_>) -> Result<(), WebhookError> {
    crate::fields::authenticate(Source::Instantly, req.body, MAX_BODY_BYTES, |b| {
        verifier.verify_instantly(b, req.x_signature, req.x_webhook_secret)
    })
}

/// Runs the webhook. Caller faults are recorded as rejections, our faults as
/// failures (retryable under the same key); both are then returned.
pub async fn receive(
    db: &impl GenericClient,
    verifier: &Verifier,
    req: Inbound<'_>,
) -> Result<Value, WebhookError> {
    let mut seen = Seen::default();
    let outcome = accept(db, verifier, &req, &mut seen).await;
    if let Err(err) = &outcome {
        webhook_events::record_refusal(db, Source::Instantly, req.body, &seen, err).await;
    }
    outcome
}

async fn accept(
    db: &impl GenericClient,
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
        |b| verifier.verify_instantly(b, req.x_signature, req.x_webhook_secret),
        req.idempotency_key,
        req.content_type,
        seen,
    )?;
    let event = parse(&payload)?;
    let (event_type, natural_key) = match &event {
        Event::Reply(r) => (REPLY_EVENT.to_string(), r.natural_key.clone()),
        Event::Other {
            event_type,
            natural_key,
        } => (event_type.clone(), natural_key.clone()),
    };
    seen.event_type = Some(event_type.clone());
    // The signature covers the body, not the `Idempotency-Key` header: a
    // payload that names its own event is keyed by that identity, so a
    // captured body re-sent with a fresh header is a replay (issue 13). The
    // header may only name a payload that has no identity of its own.
    let key = match (natural_key, header_key) {
        (Some(raw), _) => IdempotencyKey::parse(&raw)
            .map_err(|r| WebhookError::validation("idempotency_key", r))?,
        (None, Some(k)) => k,
        // Nothing identifies the event: identical bodies are the same event.
        (None, None) => IdempotencyKey::parse(&format!("sha256:{}", hash.as_str()))
            .expect("a hash is a valid key"),
    };
    seen.key = Some(key.clone());
    seen.payload = Some(payload.clone());

    let receipt = match event {
        Event::Other { event_type, .. } => {
            let result = json!({"status": "ignored", "event_type": event_type, "idempotency_key": key.as_str()});
            webhook_events::record_ignored(
                db,
                Source::Instantly,
                key.as_str(),
                hash.as_str(),
                &event_type,
                &payload,
                &result,
            )
            .await?
        }
        Event::Reply(reply) => ingest(db, &key, &hash, &reply, &payload).await?,
    };
    match receipt {
        Receipt::New { result, .. } => Ok(result),
        Receipt::Seen { result, .. } => Err(WebhookError::Duplicate { first: result }),
        Receipt::Mismatch => Err(WebhookError::KeyReused),
        Receipt::InFlight => Err(WebhookError::InFlight),
    }
}

/// The single statement that does the work (one round trip).
async fn ingest(
    db: &impl GenericClient,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    reply: &Reply,
    payload: &Value,
) -> Result<Receipt, WebhookError> {
    let params = flow_params(key, hash, reply);
    let stmt = db
        .prepare_cached("select instantly_reply_ingest($1, $2)")
        .await
        .context("preparing the Instantly flow")?;
    let row = db
        .query_one(&stmt, &[&params, payload])
        .await
        .context("running the Instantly reply flow")?;
    Ok(Receipt::from_json(&row.get::<_, Value>(0))?)
}

/// Everything the SQL flow needs, decided here: intent, summary, target stage.
pub fn flow_params(key: &IdempotencyKey, hash: &PayloadHash, reply: &Reply) -> Value {
    let own_text = intent::strip_quoted(&reply.text).trim();
    let own_text = if own_text.is_empty() {
        reply.text.trim()
    } else {
        own_text
    };
    let intent = Intent::classify(own_text, reply.subject.as_deref());
    let summary = intent::summarize(&reply.text);
    let who = reply
        .company
        .as_deref()
        .or(reply.full_name.as_deref())
        .unwrap_or_else(|| reply.email.as_str());
    json!({
        "idempotency_key": key.as_str(),
        "payload_hash": hash.as_str(),
        "email": reply.email.as_str(),
        "full_name": reply.full_name,
        "first_name": reply.first_name,
        "last_name": reply.last_name,
        "company": reply.company,
        "website": reply.website,
        "intent": intent.as_str(),
        "summary": summary,
        "opt_out": intent == Intent::Unsubscribe,
        "target_stage": if intent.qualifies_lead() { "Qualified" } else { "New" },
        "received_at": reply.received_at.to_rfc3339(),
        "deal_title": clip(format!("{who} — Instantly reply"), 200),
        "body": clip(own_text, 4000),
        "metadata": {
            "subject": reply.subject,
            "campaign_id": reply.campaign_id,
            "campaign_name": reply.campaign_name,
            "email_account": reply.email_account,
            "email_id": reply.email_id,
            "intent": intent.as_str(),
            "shape": match reply.shape { Shape::Seed => "seed", Shape::Native => "native" },
        },
    })
}

/// Keys longer than the column allows are replaced by their hash, so an
/// unusually long upstream id still deduplicates instead of being refused.
fn bounded_key(key: &str) -> String {
    if key.len() <= IdempotencyKey::MAX_LEN {
        key.to_string()
    } else {
        format!(
            "instantly:sha256:{}",
            PayloadHash::of_bytes(key.as_bytes()).as_str()
        )
    }
}

/// Parses either payload shape. Errors name the offending field.
pub fn parse(payload: &Value) -> Result<Event, WebhookError> {
    let obj = payload
        .as_object()
        .ok_or_else(|| WebhookError::Malformed("body must be a JSON object".into()))?;
    if obj.contains_key("lead") || obj.contains_key("message") {
        parse_seed(obj)
    } else if obj.contains_key("event_type") {
        parse_native(obj)
    } else {
        Err(WebhookError::validation(
            "event_type",
            "is required (or the seed shape with lead and message)",
        ))
    }
}

fn parse_seed(obj: &Map<String, Value>) -> Result<Event, WebhookError> {
    let natural_key = text(obj, "idempotency_key", "idempotency_key")?.map(str::to_owned);
    if let Some(event) = text(obj, "event", "event")?
        && !matches!(event, REPLY_EVENT | "reply")
    {
        return Ok(Event::Other {
            event_type: clip(event, 100),
            natural_key,
        });
    }
    let lead = object(obj, "lead", "lead")?;
    let message = object(obj, "message", "message")?;
    let email = email(lead, "email", "lead.email")?;
    let body = text(message, "text", "message.text")?
        .ok_or_else(|| WebhookError::validation("message.text", "is required"))?;
    Ok(Event::Reply(Box::new(Reply {
        full_name: text(lead, "full_name", "lead.full_name")?.map(|s| clip(s, 200)),
        first_name: None,
        last_name: None,
        company: text(lead, "company_name", "lead.company_name")?.map(|s| clip(s, 200)),
        // A website that is not http(s) with a host (`javascript:`…) is dropped, not stored.
        website: text(lead, "website", "lead.website")?
            .filter(|w| crate::fields::is_web_address(w))
            .map(|s| clip(s, 500)),
        text: body.to_string(),
        subject: text(message, "subject", "message.subject")?.map(|s| clip(s, 500)),
        received_at: timestamp(message, "received_at", "message.received_at")?
            .unwrap_or_else(Utc::now),
        campaign_id: text(obj, "campaign_id", "campaign_id")?.map(|s| clip(s, 100)),
        campaign_name: None,
        email_account: None,
        email_id: None,
        natural_key,
        shape: Shape::Seed,
        email,
    })))
}

fn parse_native(obj: &Map<String, Value>) -> Result<Event, WebhookError> {
    let event_type = text(obj, "event_type", "event_type")?
        .ok_or_else(|| WebhookError::validation("event_type", "is required"))?;
    let email_id = text(obj, "email_id", "email_id")?;
    let lead_email = text(obj, "lead_email", "lead_email")?;
    let stamp = text(obj, "timestamp", "timestamp")?;
    // The event type is part of the key: Instantly sends several events
    // (opened, clicked, replied) for the same email_id.
    let natural_key = match (email_id, lead_email, stamp) {
        (Some(id), _, _) => Some(format!("{event_type}:{id}")),
        (None, Some(mail), Some(ts)) => {
            Some(format!("{event_type}:{}|{ts}", mail.trim().to_lowercase()))
        }
        _ => None,
    }
    .map(|k| bounded_key(&format!("instantly:{k}")));
    if event_type != REPLY_EVENT {
        return Ok(Event::Other {
            event_type: clip(event_type, 100),
            natural_key,
        });
    }
    let email = email(obj, "lead_email", "lead_email")?;
    let body = text(obj, "reply_text", "reply_text")?
        .or(text(obj, "reply_text_snippet", "reply_text_snippet")?)
        .ok_or_else(|| WebhookError::validation("reply_text", "is required"))?;
    let first_name = text(obj, "first_name", "first_name")?.map(|s| clip(s, 100));
    let last_name = text(obj, "last_name", "last_name")?.map(|s| clip(s, 100));
    let full_name = match (&first_name, &last_name) {
        (None, None) => None,
        (f, l) => Some(clip(
            format!(
                "{} {}",
                f.as_deref().unwrap_or(""),
                l.as_deref().unwrap_or("")
            )
            .trim(),
            200,
        )),
    };
    Ok(Event::Reply(Box::new(Reply {
        full_name,
        first_name,
        last_name,
        company: text(obj, "company_name", "company_name")?.map(|s| clip(s, 200)),
        website: text(obj, "website", "website")?
            .filter(|w| crate::fields::is_web_address(w))
            .map(|s| clip(s, 500)),
        text: body.to_string(),
        subject: text(obj, "reply_subject", "reply_subject")?.map(|s| clip(s, 500)),
        received_at: timestamp(obj, "timestamp", "timestamp")?.unwrap_or_else(Utc::now),
        campaign_id: text(obj, "campaign_id", "campaign_id")?.map(|s| clip(s, 100)),
        campaign_name: text(obj, "campaign_name", "campaign_name")?.map(|s| clip(s, 200)),
        email_account: text(obj, "email_account", "email_account")?.map(|s| clip(s, 254)),
        email_id: email_id.map(|s| clip(s, 100)),
        natural_key,
        shape: Shape::Native,
        email,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native() -> Value {
        json!({
            "event_type": "reply_received", "timestamp": "2026-11-20T14:03:00Z",
            "campaign_id": "c-1", "campaign_name": "Q4", "lead_email": " Maria@Example.com ",
            "email_account": "sdr@ourco.io", "reply_text": "Sim, tenho interesse. Mande mais detalhes.",
            "reply_subject": "Re: oi", "email_id": "e-1", "first_name": "Maria", "last_name": "Souza",
            "company_name": "Souza Imóveis", "website": "https://souza.com.br"
        })
    }

    #[test]
    fn native_payload_becomes_a_reply_keyed_by_email_id() {
        let Event::Reply(r) = parse(&native()).unwrap() else {
            panic!("expected a reply")
        };
        assert_eq!(r.email.as_str(), "maria@example.com");
        assert_eq!(r.full_name.as_deref(), Some("Maria Souza"));
        assert_eq!(
            r.natural_key.as_deref(),
            Some("instantly:reply_received:e-1")
        );
        assert_eq!(r.received_at.to_rfc3339(), "2026-11-20T14:03:00+00:00");
        assert_eq!(r.shape, Shape::Native);
    }

    #[test]
    fn native_payload_without_email_id_is_keyed_by_lead_and_timestamp() {
        let mut p = native();
        p.as_object_mut().unwrap().remove("email_id");
        let Event::Reply(r) = parse(&p).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.natural_key.as_deref(),
            Some("instantly:reply_received:maria@example.com|2026-11-20T14:03:00Z")
        );
    }

    #[test]
    fn other_native_event_types_are_ignored_not_rejected() {
        let p = json!({"event_type": "email_opened", "lead_email": "x@y.com", "email_id": "e-9"});
        assert_eq!(
            parse(&p).unwrap(),
            Event::Other {
                event_type: "email_opened".into(),
                natural_key: Some("instantly:email_opened:e-9".into())
            }
        );
    }

    #[test]
    fn seed_payload_becomes_a_reply_with_its_own_key() {
        let p = json!({"event": "reply_received", "campaign_id": "c", "idempotency_key": "seed-1",
            "lead": {"email": "John.Doe@Acme.com", "full_name": "John Doe", "website": "https://acme.com"},
            "message": {"text": "I'm interested.", "subject": "Re: hi", "received_at": "2026-11-20T14:03:00Z"}});
        let Event::Reply(r) = parse(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.email.as_str(), "john.doe@acme.com");
        assert_eq!(r.natural_key.as_deref(), Some("seed-1"));
        assert_eq!(r.shape, Shape::Seed);
    }

    #[test]
    fn invalid_or_missing_email_names_the_field() {
        let mut p = native();
        p["lead_email"] = json!("not-an-email");
        assert!(
            matches!(parse(&p), Err(WebhookError::Validation { field, .. }) if field == "lead_email")
        );
        p["lead_email"] = json!(null);
        assert!(
            matches!(parse(&p), Err(WebhookError::Validation { field, reason }) if field == "lead_email" && reason == "is required")
        );
        let seed = json!({"lead": {"full_name": "x"}, "message": {"text": "hi"}});
        assert!(
            matches!(parse(&seed), Err(WebhookError::Validation { field, .. }) if field == "lead.email")
        );
    }

    #[test]
    fn wrong_json_types_and_bad_timestamps_are_validation_errors() {
        let mut p = native();
        p["reply_text"] = json!(42);
        assert!(
            matches!(parse(&p), Err(WebhookError::Validation { field, .. }) if field == "reply_text")
        );
        let mut p = native();
        p["timestamp"] = json!("yesterday");
        assert!(
            matches!(parse(&p), Err(WebhookError::Validation { field, .. }) if field == "timestamp")
        );
        assert!(matches!(
            parse(&json!([1])),
            Err(WebhookError::Malformed(_))
        ));
        assert!(
            matches!(parse(&json!({"x": 1})), Err(WebhookError::Validation { field, .. }) if field == "event_type")
        );
    }

    #[test]
    fn flow_params_qualify_interested_replies_and_opt_out_unsubscribes() {
        let key = IdempotencyKey::parse("k").unwrap();
        let hash = PayloadHash::of_bytes(b"x");
        let Event::Reply(mut r) = parse(&native()).unwrap() else {
            panic!()
        };
        let p = flow_params(&key, &hash, &r);
        assert_eq!(p["intent"], "interested");
        assert_eq!(p["target_stage"], "Qualified");
        assert_eq!(p["opt_out"], false);
        assert_eq!(p["summary"], "Sim, tenho interesse.");
        r.text = "Please unsubscribe me from this list.".into();
        let p = flow_params(&key, &hash, &r);
        assert_eq!(p["intent"], "unsubscribe");
        assert_eq!(p["target_stage"], "New");
        assert_eq!(p["opt_out"], true);
    }
}
