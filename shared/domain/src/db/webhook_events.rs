//! Receipts of inbound calls: rejections, failures and the claim outcome.

use super::GenericClient;
use crate::{
    error::WebhookError,
    types::{IdempotencyKey, PayloadHash},
};
use anyhow::Context;
use serde_json::Value;
use uuid::Uuid;

/// Which system sent an inbound event (the `webhook_events.source` CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Instantly,
    Calcom,
    Twilio,
    C2s,
    CrmApi,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Instantly => "instantly",
            Source::Calcom => "calcom",
            Source::Twilio => "twilio",
            Source::C2s => "c2s",
            Source::CrmApi => "crm_api",
        }
    }
}

/// The idempotency claim, as the flow functions in SQL answer it.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// This call did the work; `result` is its answer.
    New { event_id: Uuid, result: Value },
    /// Processed before; `result` is the first answer.
    Seen { event_id: Uuid, result: Value },
    /// Same key, different payload.
    Mismatch,
    /// Same key, still being processed elsewhere.
    InFlight,
}

impl Receipt {
    /// Reads `{"outcome", "event_id", "result"}` as returned by `instantly_reply_ingest` and `webhook_ignore`.
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let event_id = v["event_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .context("receipt without event_id")?;
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        Ok(match v["outcome"].as_str() {
            Some("new") => Receipt::New { event_id, result },
            Some("seen") => Receipt::Seen { event_id, result },
            Some("mismatch") => Receipt::Mismatch,
            Some("in_flight") => Receipt::InFlight,
            other => anyhow::bail!("unknown receipt outcome {other:?}"),
        })
    }
}

/// A call refused before any work: kept for diagnosis, never holds the idempotency slot.
pub struct Rejection<'a> {
    pub source: Source,
    pub idempotency_key: Option<&'a str>,
    pub payload_hash: &'a str,
    pub event_type: Option<&'a str>,
    pub http_status: u16,
    pub error_code: &'a str,
    pub error: &'a str,
}

pub async fn record_rejection(db: &impl GenericClient, r: &Rejection<'_>) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached(
            "insert into webhook_events (source, offered_key, payload_hash, event_type, status, \
             http_status, error_code, error, processed_at, duration_ms) \
             values ($1, $2, $3, $4, 'rejected', $5, $6, $7, now(), 0) returning id",
        )
        .await
        .context("preparing rejection insert")?;
    let row = db
        .query_one(
            &stmt,
            &[
                &r.source.as_str(),
                &r.idempotency_key,
                &r.payload_hash,
                &r.event_type,
                &i32::from(r.http_status),
                &r.error_code,
                &r.error,
            ],
        )
        .await
        .context("recording a rejected webhook")?;
    Ok(row.get(0))
}

/// An accepted event that failed on our side: recorded so it shows up, and so a retry can claim it.
pub struct Failure<'a> {
    pub source: Source,
    pub idempotency_key: &'a str,
    pub payload_hash: &'a str,
    pub event_type: Option<&'a str>,
    pub payload: Option<&'a Value>,
    pub error_code: &'a str,
    /// A short, caller-safe description (no payload content).
    pub error: &'a str,
}

pub async fn record_failure(
    db: &impl GenericClient,
    f: &Failure<'_>,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached("select webhook_fail($1, $2, $3, $4, $5, $6, $7)")
        .await
        .context("preparing failure record")?;
    let row = db
        .query_one(
            &stmt,
            &[
                &f.source.as_str(),
                &f.idempotency_key,
                &f.payload_hash,
                &f.event_type,
                &f.payload,
                &f.error_code,
                &f.error,
            ],
        )
        .await
        .context("recording a failed webhook")?;
    Ok(row.get(0))
}

/// Records a valid event that needs no work; replays get the same answer through the claim.
pub async fn record_ignored(
    db: &impl GenericClient,
    source: Source,
    key: &str,
    hash: &str,
    event_type: &str,
    payload: &Value,
    result: &Value,
) -> anyhow::Result<Receipt> {
    let stmt = db
        .prepare_cached("select webhook_ignore($1, $2, $3, $4, $5, $6)")
        .await
        .context("preparing ignored-event record")?;
    let row = db
        .query_one(
            &stmt,
            &[&source.as_str(), &key, &hash, &event_type, payload, result],
        )
        .await
        .context("recording an ignored webhook")?;
    Receipt::from_json(&row.get::<_, Value>(0))
}

/// Claims the idempotency slot inside the caller's transaction (`webhook_claim`
/// in SQL). `Receipt::New` carries a null result: do the work, then `complete`.
pub async fn claim(
    db: &impl GenericClient,
    source: Source,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    event_type: &str,
    payload: &Value,
) -> anyhow::Result<Receipt> {
    let stmt = db
        .prepare_cached("select outcome, event_id, result from webhook_claim($1, $2, $3, $4, $5)")
        .await
        .context("preparing the idempotency claim")?;
    let row = db
        .query_one(
            &stmt,
            &[
                &source.as_str(),
                &key.as_str(),
                &hash.as_str(),
                &event_type,
                payload,
            ],
        )
        .await
        .context("claiming the idempotency key")?;
    let (outcome, event_id, result): (String, Uuid, Option<Value>) =
        (row.get(0), row.get(1), row.get(2));
    let result = result.unwrap_or(Value::Null);
    Ok(match outcome.as_str() {
        "new" => Receipt::New { event_id, result },
        "seen" => Receipt::Seen { event_id, result },
        "mismatch" => Receipt::Mismatch,
        "in_flight" => Receipt::InFlight,
        other => anyhow::bail!("unknown receipt outcome {other}"),
    })
}

/// Marks a claimed event `processed` (or `ignored`) with the answer replays get.
pub async fn complete(
    db: &impl GenericClient,
    event_id: Uuid,
    status: &str,
    result: &Value,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("select webhook_complete($1, $2, $3)")
        .await
        .context("preparing the receipt completion")?;
    db.execute(&stmt, &[&event_id, &status, result])
        .await
        .context("completing the receipt")?;
    Ok(())
}

/// What a webhook edge learned before it stopped, so its receipt can be written.
#[derive(Debug, Default)]
pub struct Seen {
    pub key: Option<IdempotencyKey>,
    pub event_type: Option<String>,
    pub hash: Option<PayloadHash>,
    pub payload: Option<Value>,
}

/// Process-wide count of calls refused before authentication (401, 413).
static UNAUTHENTICATED_REFUSALS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Calls refused before authentication so far in this process.
pub fn unauthenticated_refusals() -> u64 {
    UNAUTHENTICATED_REFUSALS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether a refusal happened before the caller was authenticated: such a
/// call never touches the database (docs/security.md, "Refusals").
pub fn is_unauthenticated(err: &WebhookError) -> bool {
    matches!(
        err,
        WebhookError::Unauthorized(_) | WebhookError::PayloadTooLarge { .. }
    )
}

/// A refusal before authentication is observable as one WARN log line
/// (`webhook refused before authentication`, with the source, code and the
/// process's running count) — never as a row, so forged calls cost no
/// connection and cannot fill the table.
pub fn note_unauthenticated(source: Source, err: &WebhookError) {
    let total = UNAUTHENTICATED_REFUSALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    tracing::warn!(
        source = source.as_str(),
        status = err.status(),
        code = err.code(),
        refused_total = total,
        "webhook refused before authentication"
    );
}

/// Records why a webhook was not processed: caller faults as `rejected`
/// (no body kept, no key held), our faults as `failed` (retryable under the
/// same key). Replays (409) write nothing: the first receipt stands; nor do
/// refusals before authentication (401, 413: a log line, `note_unauthenticated`).
/// Recording is best effort: its own failure is logged, never returned.
pub async fn record_refusal(
    db: &impl GenericClient,
    source: Source,
    raw_body: &[u8],
    seen: &Seen,
    err: &WebhookError,
) {
    match err {
        WebhookError::Duplicate { .. } | WebhookError::InFlight => {}
        unauthenticated if is_unauthenticated(unauthenticated) => {
            note_unauthenticated(source, unauthenticated);
        }
        WebhookError::Unexpected(cause) => {
            tracing::error!(source = source.as_str(), error = %crate::db::loggable(cause), "webhook processing failed");
            if let (Some(key), Some(hash)) = (&seen.key, &seen.hash) {
                let failure = Failure {
                    source,
                    idempotency_key: key.as_str(),
                    payload_hash: hash.as_str(),
                    event_type: seen.event_type.as_deref(),
                    payload: seen.payload.as_ref(),
                    error_code: err.code(),
                    error: "processing failed; retry with the same idempotency key",
                };
                if let Err(e) = record_failure(db, &failure).await {
                    tracing::error!(error = %crate::db::loggable(&e), "could not record the failure");
                }
            }
        }
        caller_fault => {
            let raw_hash = PayloadHash::of_bytes(raw_body);
            let message = caller_fault.to_string();
            let rejection = Rejection {
                source,
                idempotency_key: seen.key.as_ref().map(IdempotencyKey::as_str),
                payload_hash: seen.hash.as_ref().unwrap_or(&raw_hash).as_str(),
                event_type: seen.event_type.as_deref(),
                http_status: caller_fault.status(),
                error_code: caller_fault.code(),
                error: &message,
            };
            if let Err(e) = record_rejection(db, &rejection).await {
                tracing::error!(error = %crate::db::loggable(&e), "could not record the rejection");
            }
        }
    }
}
