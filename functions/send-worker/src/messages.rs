//! `send_message`: one queued outbound message to Twilio, at most once.
//!
//! The attempt is claimed in PostgreSQL before the call (`messaging::store`),
//! so a redelivered job finds it: a message with a SID is done; one whose
//! claim is older than the lease with no SID (the worker died between
//! Twilio's answer and our update) is failed as "uncertain: previous attempt
//! outcome unknown" rather than sent twice. Only answers proving Twilio did
//! not take the message (429, 503, a connect-phase failure) release the claim
//! and retry with backoff; a 500/502/504, a timeout after sending or a
//! transport error mid-request fail it at once as "uncertain: …" with the
//! claim kept (never resent); other 4xx fail for good with Twilio's code and
//! a readable reason; retries that run out fail the message too. Logs carry
//! ids only, never bodies or numbers.

use crate::{Deps, Message, Outcome, twilio};
use crm_domain::{
    jobs::SendMessage,
    messaging::store::{self, Claim, Queued},
};
use std::time::Duration;

/// How long Twilio may fetch the media file after the call.
const MEDIA_URL_TTL: Duration = Duration::from_secs(3600);

/// A claim older than this with no result (no SID) is an attempt whose
/// outcome is unknown; campaign deliveries use the same lease.
pub(crate) fn lease(deps: &Deps) -> Duration {
    deps.config.timeout + Duration::from_secs(60)
}

pub(crate) async fn send(job: &SendMessage, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let exhausted = msg.receive_count >= deps.config.max_attempts;
    let claimed = async {
        let mut client = deps.pool.get().await?;
        store::claim(&mut client, job.message_id, lease(deps)).await
    };
    let queued = match claimed.await {
        Ok(Claim::Go(q)) => q,
        Ok(Claim::Finished) => return Outcome::Done,
        Ok(Claim::Missing) => {
            tracing::warn!(message_id = %job.message_id, "no such outbound message: nothing to send");
            return Outcome::Done;
        }
        Ok(Claim::OptedOut) => {
            tracing::info!(message_id = %job.message_id, "contact opted out of the channel since: failed opted_out, not sent");
            return Outcome::Done;
        }
        Ok(Claim::Uncertain) => {
            tracing::error!(message_id = %job.message_id, "previous send attempt outcome unknown: marked failed, not resent");
            return Outcome::Done;
        }
        Ok(Claim::Busy) if !exhausted => {
            return Outcome::Retry {
                delay: deps.backoff.delay(msg.receive_count),
            };
        }
        Ok(Claim::Busy) => {
            return Outcome::DeadLetter {
                reason: "receives exhausted while another attempt held the message".into(),
            };
        }
        Err(e) if !exhausted => {
            tracing::warn!(message_id = %job.message_id, error = %crm_domain::db::loggable(&e), "claiming the message failed; will retry");
            return Outcome::Retry {
                delay: deps.backoff.delay(msg.receive_count),
            };
        }
        Err(e) => {
            let reason = format!(
                "receives exhausted while claiming failed ({})",
                crm_domain::db::loggable(&e)
            );
            return crate::poison(msg, reason, deps).await;
        }
    };
    let answer = call(&queued, deps).await;
    let recorded = record(&queued, &answer, exhausted, deps).await;
    match (answer, recorded) {
        (_, Err(e)) => {
            // Twilio's answer is not stored: the claim stays, so the next
            // receive fails the message as uncertain instead of resending.
            tracing::error!(message_id = %queued.id, error = %crm_domain::db::loggable(&e), "recording Twilio's answer failed");
            Outcome::Retry {
                delay: deps.backoff.delay(msg.receive_count),
            }
        }
        (twilio::Answer::Retry { .. }, Ok(())) if !exhausted => Outcome::Retry {
            delay: deps.backoff.delay(msg.receive_count),
        },
        (twilio::Answer::Retry { reason }, Ok(())) => Outcome::DeadLetter {
            reason: format!("gave up after {} receives: {reason}", msg.receive_count),
        },
        _ => Outcome::Done,
    }
}

/// Twilio, or the local sink without credentials.
async fn call(q: &Queued, deps: &Deps) -> twilio::Answer {
    let media_url = match (&q.media_key, &deps.media) {
        (Some(key), Some(presigner)) => match presigner.presign_get(key, MEDIA_URL_TTL).await {
            Ok(url) => Some(url),
            Err(e) => {
                return twilio::Answer::Retry {
                    reason: format!("presigning the media URL failed ({e:#})"),
                };
            }
        },
        _ => None,
    };
    let config = deps.config.twilio.as_ref();
    let fields = twilio::form(config, q, media_url.as_deref());
    match config {
        Some(config) => twilio::send(&deps.http, config, &fields).await,
        None => twilio::Answer::Sent {
            sid: twilio::sink_sid(q.id),
            status: "sent".into(),
        },
    }
}

async fn record(
    q: &Queued,
    answer: &twilio::Answer,
    exhausted: bool,
    deps: &Deps,
) -> anyhow::Result<()> {
    let client = deps.pool.get().await?;
    match answer {
        twilio::Answer::Sent { sid, status } => {
            let (sink, local) = match deps.config.twilio {
                Some(_) => ("twilio", None),
                None => {
                    let fields = twilio::form(None, q, None);
                    let map: serde_json::Map<String, serde_json::Value> = fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.into()))
                        .collect();
                    ("local", Some(serde_json::Value::Object(map)))
                }
            };
            store::record_sent(&client, q.id, sid, status, sink, local.as_ref()).await?;
            if sink == "local" {
                tracing::warn!(message_id = %q.id, "LOCAL SINK: message recorded, not sent (no Twilio credentials)");
            } else {
                tracing::info!(message_id = %q.id, status = status.as_str(), "message handed to Twilio");
            }
        }
        twilio::Answer::Rejected { code, reason } => {
            store::record_failed(&client, q.id, *code, reason).await?;
            tracing::warn!(message_id = %q.id, error_code = code, "Twilio refused the message: failed");
        }
        twilio::Answer::Uncertain { reason } => {
            // `uncertain: …` also makes a linked campaign row `uncertain`.
            let why = format!("uncertain: {reason}; not resent");
            store::record_failed(&client, q.id, None, &why).await?;
            tracing::error!(message_id = %q.id, reason = reason.as_str(), "Twilio call outcome unknown: failed as uncertain, not resent");
        }
        twilio::Answer::Retry { reason } if exhausted => {
            let why = format!("gave up after retries: {reason}");
            store::record_failed(&client, q.id, None, &why).await?;
            tracing::error!(message_id = %q.id, "message send retries exhausted: failed");
        }
        twilio::Answer::Retry { .. } => {
            store::release(&client, q.id).await?;
            tracing::warn!(message_id = %q.id, "Twilio did not take the message; will retry");
        }
    }
    Ok(())
}
