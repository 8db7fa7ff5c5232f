//! The Contact2Sale (C2S) lead webhook: authenticate the raw bytes (a
//! static token, header or URL), read one element or an array of them, and
//! ingest each element on its own in one statement (`c2s_ingest`,
//! migrations/V16): receipt keyed `c2s:<lead id>:<hook action>:<updated_at>`,
//! forward-only lead upsert, one enrichment job in the outbox. Nothing
//! external is called in the request path; the enrichment worker does the rest.
//!
//! Whole-call checks run in the other webhooks' order and give their answers
//! (413, 401, 415, 400; 422 for a body that is neither an object nor a
//! non-empty array of at most `MAX_ELEMENTS`). Past them C2S always gets 200
//! with one outcome per element — `accepted`, `duplicate` or `invalid` — so
//! one bad element never makes C2S re-send the good ones. The exception is
//! our own fault (500): the element is recorded `failed` (re-sent, it is
//! processed afresh) and elements after it are not processed.

pub mod link;
pub mod managers;
pub mod payload;
pub mod read;
pub mod store;

use crate::{
    db::{
        GenericClient,
        webhook_events::{self, Seen, Source},
    },
    error::WebhookError,
    fields::{OpenedJson, open_json},
    signature::Verifier,
    types::PayloadHash,
};
pub use payload::{
    HookAction, Lead, LeadEvent, Shape, contact_hash, contact_hash_phones, parse_element,
};
use serde_json::{Value, json};
use store::{ElementRejection, Ingest};
use uuid::Uuid;

/// Larger bodies are refused with 413 before they are hashed or parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Elements in one call (an array); more is a 422.
pub const MAX_ELEMENTS: usize = 100;

/// What the HTTP edge extracted from the request; nothing here is trusted yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inbound<'a> {
    pub content_type: Option<&'a str>,
    /// `X-Webhook-Token`.
    pub header_token: Option<&'a str>,
    /// The `token` query parameter of the subscribed URL.
    pub query_token: Option<&'a str>,
    pub body: &'a [u8],
}

/// Runs the webhook. Whole-call refusals are recorded as rejections and
/// returned; per-element outcomes are in the 200 answer. Each accepted
/// element's job `message_id` is pushed to `enqueued` once its statement
/// has committed — also when a later element fails the call — so the caller
/// can publish exactly those rows (`outbox::relay_ids`).
pub async fn receive(
    db: &impl GenericClient,
    verifier: &Verifier,
    req: Inbound<'_>,
    enqueued: &mut Vec<Uuid>,
) -> Result<Value, WebhookError> {
    let mut seen = Seen::default();
    let outcome = accept(db, verifier, &req, &mut seen, enqueued).await;
    if let Err(err) = &outcome {
        // Without a key in `seen`, an internal error is only logged here:
        // the failing element was recorded `failed` under its own key.
        webhook_events::record_refusal(db, Source::C2s, req.body, &seen, err).await;
    }
    outcome
}

async fn accept(
    db: &impl GenericClient,
    verifier: &Verifier,
    req: &Inbound<'_>,
    seen: &mut Seen,
    enqueued: &mut Vec<Uuid>,
) -> Result<Value, WebhookError> {
    let OpenedJson { payload, .. } = open_json(
        req.body,
        MAX_BODY_BYTES,
        |b| verifier.verify_token(b, req.header_token, req.query_token),
        // Keys are per element; an Idempotency-Key header would name the whole call.
        None,
        req.content_type,
        seen,
    )?;
    let elements = elements(&payload)?;
    let mut results = Vec::with_capacity(elements.len());
    let (mut accepted, mut duplicate, mut invalid) = (0, 0, 0);
    for (index, el) in elements.iter().enumerate() {
        let result = element(db, index, el, enqueued).await?;
        match result["outcome"].as_str() {
            Some("accepted") => accepted += 1,
            Some("duplicate") => duplicate += 1,
            _ => invalid += 1,
        }
        results.push(result);
    }
    Ok(json!({
        "status": "ok",
        "received": results.len(),
        "accepted": accepted,
        "duplicate": duplicate,
        "invalid": invalid,
        "results": results,
    }))
}

/// One element, or an array of 1–`MAX_ELEMENTS` elements.
fn elements(payload: &Value) -> Result<Vec<&Value>, WebhookError> {
    match payload {
        Value::Object(_) => Ok(vec![payload]),
        Value::Array(a) if a.is_empty() => Err(WebhookError::validation(
            "body",
            "must not be an empty array",
        )),
        Value::Array(a) if a.len() > MAX_ELEMENTS => Err(WebhookError::validation(
            "body",
            format!("must have at most {MAX_ELEMENTS} elements"),
        )),
        Value::Array(a) => Ok(a.iter().collect()),
        _ => Err(WebhookError::validation(
            "body",
            "must be a JSON object or an array of objects",
        )),
    }
}

/// Ingests one element and answers its outcome. Only our own faults are errors.
async fn element(
    db: &impl GenericClient,
    index: usize,
    el: &Value,
    enqueued: &mut Vec<Uuid>,
) -> Result<Value, WebhookError> {
    let ev = match parse_element(el) {
        Ok(ev) => ev,
        Err(err) => {
            let (lead_id, hook_action) = identity(el);
            let message = err.to_string();
            let hash = PayloadHash::of_json(el);
            let rejection = ElementRejection {
                lead_id: lead_id.as_deref(),
                hook_action: hook_action.as_deref(),
                offered_key: None,
                payload_hash: hash.as_str(),
                error_code: err.code(),
                error: &message,
            };
            record_rejection(db, &rejection).await;
            tracing::info!(
                index,
                lead_id = lead_id.as_deref(),
                code = err.code(),
                "c2s element invalid"
            );
            let mut out = err.body();
            out["index"] = json!(index);
            out["outcome"] = json!("invalid");
            out["lead_id"] = json!(lead_id);
            out["hook_action"] = json!(hook_action);
            return Ok(out);
        }
    };
    let key = ev.idempotency_key();
    let base = json!({
        "index": index,
        "lead_id": ev.lead_id,
        "hook_action": ev.hook_action.as_str(),
        "idempotency_key": key,
    });
    let ingest = match store::ingest(db, &ev, &key).await {
        Ok(i) => i,
        Err(cause) => {
            if let Err(e) = store::record_failure(db, &ev, &key).await {
                tracing::error!(error = %crate::db::loggable(&e), "could not record the failed C2S element");
            }
            return Err(WebhookError::Unexpected(cause.context(format!(
                "ingesting C2S element {index} (lead {})",
                ev.lead_id
            ))));
        }
    };
    let mut out = base;
    match ingest {
        Ingest::Accepted {
            event_id,
            lead_updated,
            outbox_message_id,
        } => {
            enqueued.push(outbox_message_id);
            tracing::info!(index, lead_id = %ev.lead_id, event_id = %event_id,
                           outbox_message_id = %outbox_message_id, lead_updated,
                           hook_action = ev.hook_action.as_str(), shape = ev.shape.as_str(),
                           "c2s element accepted");
            out["outcome"] = json!("accepted");
            out["event_id"] = json!(event_id);
            out["lead_updated"] = json!(lead_updated);
        }
        Ingest::Duplicate { event_id, status } => {
            tracing::info!(index, lead_id = %ev.lead_id, event_id = %event_id, "c2s element duplicate");
            out["outcome"] = json!("duplicate");
            out["event_id"] = json!(event_id);
            out["status"] = json!(status);
        }
        Ingest::Conflict { event_id } => {
            let err = WebhookError::KeyReused;
            let message = err.to_string();
            let hash = ev.payload_hash();
            let rejection = ElementRejection {
                lead_id: Some(&ev.lead_id),
                hook_action: Some(ev.hook_action.as_str()),
                offered_key: Some(&key),
                payload_hash: hash.as_str(),
                error_code: err.code(),
                error: &message,
            };
            record_rejection(db, &rejection).await;
            tracing::info!(index, lead_id = %ev.lead_id, event_id = %event_id, "c2s element conflicts with its key");
            out["outcome"] = json!("invalid");
            out["code"] = json!(err.code());
            out["error"] = json!(message);
            out["event_id"] = json!(event_id);
        }
    }
    Ok(out)
}

/// Best effort: an invalid element's rejection receipt. Its own failure is logged, not returned.
async fn record_rejection(db: &impl GenericClient, r: &ElementRejection<'_>) {
    if let Err(e) = store::record_rejection(db, r).await {
        tracing::error!(error = %crate::db::loggable(&e), "could not record the rejected C2S element");
    }
}

/// The lead id and hook action of an element that failed to parse, when
/// they can be read (for the answer and the receipt).
fn identity(el: &Value) -> (Option<String>, Option<String>) {
    let id_of = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 255 => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let id = [&el["id"], &el["data"]["id"], &el["lead"]["id"]]
        .into_iter()
        .find_map(id_of);
    let action = el["hook_action"]
        .as_str()
        .and_then(HookAction::parse)
        .map(|a| a.as_str().to_string());
    (id, action)
}

#[cfg(test)]
mod tests;
