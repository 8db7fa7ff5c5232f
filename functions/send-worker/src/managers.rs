//! `notify_manager`: one manager notification (a C2S lead closed, written by
//! the enrichment worker) delivered once, by e-mail through the `Mailer`
//! port or as a Standard-Webhooks-signed POST to the configured outbound URL
//! the manager's `webhook_target_key` names (the URL lives in
//! `OUTBOUND_WEBHOOK_URLS`, never in the database).
//!
//! At most once: the row moves `pending` → `sending` (committed) before the
//! call and to `sent` / `failed` right after; a retryable failure (the
//! provider provably did not take it) puts it back to `pending` for the next
//! receive; an e-mail whose outcome is unknown (`MailError::Uncertain`: SES
//! 5xx, a timeout after sending) ends `uncertain`, flagged and not repeated. A `sending` row older than the
//! lease (the worker died mid-call) becomes `uncertain` and is not sent
//! again. Logs carry the notification id only, never addresses or text.

use crate::{Deps, Message, Outcome, deliver};
use crm_domain::{
    enrichment::managers::{self as store, NotificationClaim, NotificationToSend},
    jobs::NotifyManager,
    mail::{MailError, OutboundEmail},
    webhooks_out::Verdict,
};
use std::time::Duration;

fn lease(deps: &Deps) -> Duration {
    deps.config.timeout + Duration::from_secs(60)
}

/// What one attempt came to: the row's next status and why.
struct Attempt {
    status: &'static str,
    provider_id: Option<String>,
    error: Option<String>,
}

pub(crate) async fn notify(job: &NotifyManager, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let exhausted = msg.receive_count >= deps.config.max_attempts;
    let retry = || Outcome::Retry {
        delay: deps.backoff.delay(msg.receive_count),
    };
    let claimed = async {
        let client = deps.pool.get().await?;
        store::claim_notification(&client, job.notification_id, lease(deps)).await
    };
    let n = match claimed.await {
        Ok(NotificationClaim::Send(n)) => n,
        Ok(NotificationClaim::Finished(status)) => {
            tracing::info!(notification_id = %job.notification_id, status = %status, "notification already finished");
            return Outcome::Done;
        }
        Ok(NotificationClaim::Missing) => {
            tracing::warn!(notification_id = %job.notification_id, "no such notification: nothing to send");
            return Outcome::Done;
        }
        Ok(NotificationClaim::Busy) if !exhausted => return retry(),
        Ok(NotificationClaim::Busy) => {
            return Outcome::DeadLetter {
                reason: "receives exhausted while another attempt held the notification".into(),
            };
        }
        Err(e) if !exhausted => {
            tracing::warn!(notification_id = %job.notification_id, error = %crm_domain::db::loggable(&e), "claiming the notification failed; will retry");
            return retry();
        }
        Err(e) => {
            return Outcome::DeadLetter {
                reason: format!("receives exhausted: {}", crm_domain::db::loggable(&e)),
            };
        }
    };
    let mut attempt = match n.channel.as_str() {
        "email" => by_email(&n, deps).await,
        _ => by_webhook(&n, deps).await,
    };
    if attempt.status == "pending" && exhausted {
        attempt.status = "failed";
        attempt.error = attempt
            .error
            .map(|e| format!("gave up after {} receives: {e}", msg.receive_count));
    }
    let recorded = async {
        let client = deps.pool.get().await?;
        store::record_notification(
            &client,
            n.id,
            attempt.status,
            attempt.provider_id.as_deref(),
            attempt.error.as_deref(),
        )
        .await
    };
    if let Err(e) = recorded.await {
        // The row stays `sending`: after the lease it becomes uncertain, never a second send.
        tracing::error!(notification_id = %n.id, error = %crm_domain::db::loggable(&e), "could not record the notification result");
    }
    tracing::info!(notification_id = %n.id, channel = %n.channel, attempt = n.attempt, status = attempt.status, "manager notification attempt");
    match attempt.status {
        "pending" => retry(),
        "failed" if exhausted => Outcome::DeadLetter {
            reason: attempt.error.unwrap_or_default(),
        },
        _ => Outcome::Done,
    }
}

async fn by_email(n: &NotificationToSend, deps: &Deps) -> Attempt {
    let Some(to) = n.email.clone() else {
        return Attempt {
            status: "failed",
            provider_id: None,
            error: Some("the manager has no e-mail".into()),
        };
    };
    let email = OutboundEmail {
        to,
        subject: n.subject.clone(),
        text: n.body.clone(),
        html: None,
        headers: Vec::new(),
        reference: n.id,
    };
    match deps.mailer.send(&email).await {
        Ok(sent) => Attempt {
            status: "sent",
            provider_id: Some(sent.provider_id),
            error: None,
        },
        Err(MailError::Retryable(why)) => Attempt {
            status: "pending",
            provider_id: None,
            error: Some(why),
        },
        // SES may have taken it: flagged, never sent a second time.
        Err(MailError::Uncertain(why)) => Attempt {
            status: "uncertain",
            provider_id: None,
            error: Some(why),
        },
        Err(MailError::Permanent(why)) => Attempt {
            status: "failed",
            provider_id: None,
            error: Some(why),
        },
    }
}

async fn by_webhook(n: &NotificationToSend, deps: &Deps) -> Attempt {
    let failed = |why: &str| Attempt {
        status: "failed",
        provider_id: None,
        error: Some(why.to_string()),
    };
    let Some(key) = deps.config.key.as_ref() else {
        return failed("no outbound webhook secret configured");
    };
    let Some(target) = deps
        .config
        .targets
        .iter()
        .find(|t| Some(&t.key) == n.webhook_target_key.as_ref())
    else {
        return failed("the manager's webhook target is not among OUTBOUND_WEBHOOK_URLS");
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "type": "c2s.lead_closed",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "data": {"notification_id": n.id, "lead_id": n.lead_id, "subject": n.subject, "text": n.body},
    }))
    .expect("JSON serialises");
    // The notification id is the webhook-id: receivers deduplicate on it.
    let (outcome, _) = deliver::attempt(&deps.http, key, target, &n.id.to_string(), &body).await;
    match outcome.verdict() {
        Verdict::Delivered => Attempt {
            status: "sent",
            provider_id: outcome.http_status().map(|s| format!("http-{s}")),
            error: None,
        },
        Verdict::Retry => Attempt {
            status: "pending",
            provider_id: None,
            error: Some(outcome.describe()),
        },
        Verdict::Reject => failed(&format!("{}: refused", outcome.describe())),
    }
}
