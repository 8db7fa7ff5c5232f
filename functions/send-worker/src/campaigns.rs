//! `send_campaign_message`: one released campaign delivery through its
//! channel's provider, at most once (the ledger row is the record; see
//! `crm_domain::campaigns::delivery`).
//!
//! - e-mail → the `Mailer` (SES v2, or the local sink): subject and text
//!   rendered from the template, the signed unsubscribe link in the text and
//!   in `List-Unsubscribe` / `List-Unsubscribe-Post` (one-click, RFC 8058);
//! - WhatsApp/SMS → an outbound `messages` row linked to the delivery, handed
//!   to the same Twilio send path as one-off messages (`messages::send`), and
//!   the ledger follows the message (here and on Twilio's status callbacks);
//! - webhook → a Standard-Webhooks-signed POST of `{delivery_id, campaign_id,
//!   contact_id, channel, body}` to `CAMPAIGN_WEBHOOK_URL`; 2xx delivers.
//!
//! Provider answers: taken → `sent` (webhook: `delivered`); provably not
//! taken (throttled, no connection made) → the claim is released and the job
//! retried with backoff until `SEND_MAX_ATTEMPTS`, then `failed`
//! (`retries_exhausted`); an e-mail whose outcome is unknown (timeout after
//! sending, 5xx, transport error mid-request) → the claim is kept and the
//! row `failed` with `uncertain`, never resent (SES has no idempotency key);
//! refused → `failed` with the provider's code. The webhook channel retries
//! timeouts and 5xx too: every attempt carries the delivery id as
//! `webhook-id`, on which Standard Webhooks receivers deduplicate. Logs
//! carry ids only.

use crate::{Deps, Message, Outcome, config::Target, deliver, messages};
use crm_domain::{
    Secret,
    campaigns::delivery::{self, Begin, Content, Links, Prepared},
    jobs::{SendCampaignMessage, SendMessage},
    mail::{MailError, OutboundEmail},
    webhooks_out::{SigningKey, Verdict},
};
use crm_platform::{
    config::{AppEnv, ConfigError, Env},
    email::SesConfig,
};
use serde_json::json;
use std::time::Duration;

const UNSUBSCRIBE_SECRET: &str = "UNSUBSCRIBE_SECRET";
const UNSUBSCRIBE_TTL_DAYS: &str = "UNSUBSCRIBE_TTL_DAYS";
const PUBLIC_BASE_URL: &str = "PUBLIC_BASE_URL";
const WEBHOOK_URL: &str = "CAMPAIGN_WEBHOOK_URL";
const WEBHOOK_SECRET: &str = "CAMPAIGN_WEBHOOK_SECRET";
const SES_FROM: &str = "SES_FROM_ADDRESS";
const SES_CONFIG_SET: &str = "SES_CONFIGURATION_SET";

use crate::config::err;

/// The campaign side of the send worker's configuration.
#[derive(Debug, Clone, Default)]
pub struct CampaignConfig {
    /// Unsubscribe links; `None` without `UNSUBSCRIBE_SECRET` (then e-mail and
    /// SMS campaign deliveries fail `unsubscribe_unconfigured` rather than go
    /// out without a link).
    pub links: Option<Links>,
    /// `CAMPAIGN_WEBHOOK_URL` and its `CAMPAIGN_WEBHOOK_SECRET`; `None`: the local sink.
    pub webhook: Option<(Target, SigningKey)>,
    /// Amazon SES v2; `None`: e-mails go to the local sink.
    pub ses: Option<SesConfig>,
    /// `APP_ENV=production` (set by `Deps::new`): no local sinks, a channel
    /// without its provider fails its rows instead.
    pub production: bool,
}

impl CampaignConfig {
    pub fn from_env(env: &Env, timeout: Duration) -> Result<Self, ConfigError> {
        let links = match env.optional(UNSUBSCRIBE_SECRET) {
            None => None,
            Some(_) => {
                // At least 32 bytes unless APP_ENV=test (docs/security.md).
                let secret: Secret = AppEnv::from_env(env)?.signing_key(env, UNSUBSCRIBE_SECRET)?;
                let base = env.required(PUBLIC_BASE_URL).map_err(|_| {
                    err(
                        PUBLIC_BASE_URL,
                        "is required with UNSUBSCRIBE_SECRET (unsubscribe links)",
                    )
                })?;
                let base = base.trim().trim_end_matches('/').to_string();
                match reqwest::Url::parse(&base) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => return Err(err(PUBLIC_BASE_URL, "is not an http(s) URL")),
                }
                let days: u64 = env.parse(UNSUBSCRIBE_TTL_DAYS, 90)?;
                if !(1..=3650).contains(&days) {
                    return Err(err(UNSUBSCRIBE_TTL_DAYS, "must be between 1 and 3650"));
                }
                Some(Links {
                    base_url: base,
                    secret,
                    ttl: Duration::from_secs(days * 86_400),
                })
            }
        };
        let webhook = match env.optional(WEBHOOK_URL) {
            None => None,
            Some(raw) => {
                // The URL is never echoed back: it may carry a token.
                let target =
                    Target::parse(raw).ok_or_else(|| err(WEBHOOK_URL, "is not an http(s) URL"))?;
                let secret = env
                    .optional(WEBHOOK_SECRET)
                    .ok_or_else(|| err(WEBHOOK_SECRET, "is required with CAMPAIGN_WEBHOOK_URL"))?;
                let key =
                    SigningKey::parse(secret).map_err(|e| err(WEBHOOK_SECRET, e.to_string()))?;
                Some((target, key))
            }
        };
        let ses = match env.optional(SES_FROM) {
            None => None,
            Some(from) if from.contains('@') && !from.contains(['\r', '\n']) => Some(SesConfig {
                from: from.trim().to_string(),
                configuration_set: env.optional(SES_CONFIG_SET).map(|s| s.trim().to_string()),
                timeout,
            }),
            Some(_) => return Err(err(SES_FROM, "is not an e-mail address")),
        };
        Ok(Self {
            links,
            webhook,
            ses,
            production: false,
        })
    }
}

pub(crate) async fn send(job: &SendCampaignMessage, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let id = job.delivery_id;
    let exhausted = msg.receive_count >= deps.config.max_attempts;
    let retry = || Outcome::Retry {
        delay: deps.backoff.delay(msg.receive_count),
    };
    let begun = async {
        let mut client = deps.pool.get().await?;
        delivery::begin(
            &mut client,
            id,
            messages::lease(deps),
            deps.config.campaigns.links.as_ref(),
        )
        .await
    };
    match begun.await {
        Ok(Begin::Done) => {
            tracing::debug!(delivery_id = %id, "delivery already handled");
            Outcome::Done
        }
        Ok(Begin::Requeued(why)) => {
            tracing::info!(delivery_id = %id, reason = why, "delivery held: back to queued");
            Outcome::Done
        }
        Ok(Begin::Cancelled) => {
            tracing::info!(delivery_id = %id, "campaign cancelled: delivery cancelled");
            Outcome::Done
        }
        Ok(Begin::Skipped(reason)) => {
            tracing::info!(delivery_id = %id, reason, "delivery skipped at send time");
            Outcome::Done
        }
        Ok(Begin::Failed(code)) => {
            tracing::warn!(delivery_id = %id, error_code = %code, "delivery failed before sending");
            Outcome::Done
        }
        Ok(Begin::Busy) if !exhausted => retry(),
        Ok(Begin::Busy) => give_up_uncertain(id, deps).await,
        Ok(Begin::Send(p)) => provider_call(&p, msg, deps).await,
        Ok(Begin::Message(message_id)) => via_twilio(id, message_id, msg, deps).await,
        Err(e) if !exhausted => {
            tracing::warn!(delivery_id = %id, error = %crm_domain::db::loggable(&e), "claiming the delivery failed; will retry");
            retry()
        }
        Err(e) => {
            let reason = format!(
                "receives exhausted while claiming the delivery failed ({})",
                crm_domain::db::loggable(&e)
            );
            crate::poison(msg, reason, deps).await
        }
    }
}

/// The last receive found another attempt in flight: its outcome cannot be
/// known from here, so the row is failed as uncertain (never resent) —
/// unless that attempt recorded its answer meanwhile (the row is no longer
/// `sending`): then its `sent`/`delivered` stands.
async fn give_up_uncertain(id: uuid::Uuid, deps: &Deps) -> Outcome {
    let failed = async {
        let client = deps.pool.get().await?;
        delivery::record_uncertain(
            &client,
            id,
            "receives exhausted while another attempt held the delivery",
        )
        .await
    };
    match failed.await {
        Ok(true) => {
            tracing::error!(delivery_id = %id, "delivery failed as uncertain: another attempt held it");
            Outcome::Done
        }
        Ok(false) => {
            tracing::info!(delivery_id = %id, "the other attempt recorded its answer: delivery left as it is");
            Outcome::Done
        }
        Err(e) => Outcome::DeadLetter {
            reason: format!(
                "receives exhausted while another attempt held the delivery ({})",
                crm_domain::db::loggable(&e)
            ),
        },
    }
}

/// How an e-mail or webhook call ended.
enum Answer {
    /// Taken; `delivered` for a webhook (no later callback).
    Sent {
        provider_id: String,
        final_: bool,
    },
    Retry(String),
    /// May have been taken: the claim stays, the row fails `uncertain`.
    Uncertain(String),
    Rejected {
        code: String,
        reason: String,
    },
}

async fn provider_call(p: &Prepared, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let answer = match &p.content {
        Content::Email {
            to,
            subject,
            text,
            unsubscribe_url,
        } => {
            let email = OutboundEmail {
                to: to.clone(),
                subject: subject.clone(),
                text: text.clone(),
                html: None,
                headers: vec![
                    ("List-Unsubscribe".into(), format!("<{unsubscribe_url}>")),
                    (
                        "List-Unsubscribe-Post".into(),
                        "List-Unsubscribe=One-Click".into(),
                    ),
                ],
                reference: p.delivery_id,
            };
            match deps.mailer.send(&email).await {
                Ok(sent) => {
                    if deps.mailer.is_local() {
                        tracing::warn!(delivery_id = %p.delivery_id, "LOCAL MAIL SINK: campaign e-mail recorded, not sent (SES_FROM_ADDRESS not set)");
                    }
                    Answer::Sent {
                        provider_id: sent.provider_id,
                        final_: false,
                    }
                }
                Err(MailError::Retryable(r)) => Answer::Retry(r),
                Err(MailError::Uncertain(r)) => Answer::Uncertain(r),
                Err(MailError::Permanent(r)) => Answer::Rejected {
                    code: "rejected".into(),
                    reason: r,
                },
            }
        }
        Content::Webhook { body } => webhook(p, body, deps).await,
    };
    let max = deps.config.max_attempts;
    let exhausted = msg.receive_count >= max || u32::try_from(p.attempt).unwrap_or(0) >= max;
    let recorded = async {
        let client = deps.pool.get().await?;
        match &answer {
            Answer::Sent {
                provider_id,
                final_: false,
            } => delivery::record_sent(&client, p.delivery_id, provider_id).await,
            Answer::Sent { provider_id, .. } => {
                delivery::record_delivered(&client, p.delivery_id, provider_id).await
            }
            Answer::Rejected { code, reason } => {
                delivery::record_failed(&client, p.delivery_id, code, reason).await
            }
            Answer::Uncertain(reason) => {
                let why = format!("outcome unknown, not resent: {reason}");
                delivery::record_failed(&client, p.delivery_id, delivery::UNCERTAIN, &why).await
            }
            Answer::Retry(reason) if exhausted => {
                let why = format!("gave up after {} attempt(s): {reason}", p.attempt);
                delivery::record_failed(&client, p.delivery_id, delivery::RETRIES_EXHAUSTED, &why)
                    .await
            }
            Answer::Retry(reason) => delivery::release(&client, p.delivery_id, reason).await,
        }
    };
    if let Err(e) = recorded.await {
        // The provider's answer is not stored: the claim stays, so a later
        // receive fails the row as uncertain instead of sending again.
        tracing::error!(delivery_id = %p.delivery_id, error = %crm_domain::db::loggable(&e), "recording the provider's answer failed");
        return Outcome::Retry {
            delay: deps.backoff.delay(msg.receive_count),
        };
    }
    match answer {
        Answer::Sent { .. } => {
            tracing::info!(delivery_id = %p.delivery_id, campaign_id = %p.campaign_id, "campaign delivery handed to the provider");
            Outcome::Done
        }
        Answer::Rejected { code, .. } => {
            tracing::warn!(delivery_id = %p.delivery_id, error_code = %code, "provider refused the delivery: failed");
            Outcome::Done
        }
        Answer::Uncertain(_) => {
            tracing::error!(delivery_id = %p.delivery_id, "provider call outcome unknown: failed as uncertain, not resent");
            Outcome::Done
        }
        Answer::Retry(_) if exhausted => {
            tracing::error!(delivery_id = %p.delivery_id, attempt = p.attempt, "delivery retries exhausted: failed");
            Outcome::Done
        }
        Answer::Retry(_) => {
            tracing::warn!(delivery_id = %p.delivery_id, attempt = p.attempt, "provider did not take the delivery; will retry");
            Outcome::Retry {
                delay: deps.backoff.delay(msg.receive_count),
            }
        }
    }
}

/// The exact JSON posted for a webhook delivery.
pub fn webhook_body(p: &Prepared, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "delivery_id": p.delivery_id,
        "campaign_id": p.campaign_id,
        "contact_id": p.contact_id,
        "channel": "webhook",
        "body": body,
    }))
    .expect("a JSON object always serialises")
}

async fn webhook(p: &Prepared, body: &str, deps: &Deps) -> Answer {
    let Some((target, key)) = deps.config.campaigns.webhook.as_ref() else {
        if deps.config.campaigns.production {
            return Answer::Rejected {
                code: "webhook_unconfigured".into(),
                reason: "the webhook channel is not configured (CAMPAIGN_WEBHOOK_URL is not set)"
                    .into(),
            };
        }
        tracing::warn!(delivery_id = %p.delivery_id, "LOCAL SINK: CAMPAIGN_WEBHOOK_URL not set; webhook delivery recorded, not posted");
        return Answer::Sent {
            provider_id: format!("local-{}", p.delivery_id.simple()),
            final_: true,
        };
    };
    let bytes = webhook_body(p, body);
    // The webhook-id is the delivery id: the same on every retry, so the
    // receiver deduplicates (Standard Webhooks). That is why, unlike e-mail,
    // a timeout or 5xx (the receiver may have taken it) is retried here: a
    // second POST of the same delivery is a duplicate the receiver drops.
    let (outcome, _) =
        deliver::attempt(&deps.http, key, target, &p.delivery_id.to_string(), &bytes).await;
    match outcome.verdict() {
        Verdict::Delivered => Answer::Sent {
            provider_id: format!("http-{}", outcome.http_status().unwrap_or(200)),
            final_: true,
        },
        Verdict::Retry => Answer::Retry(format!("webhook {}", outcome.describe())),
        Verdict::Reject => Answer::Rejected {
            code: format!("http_{}", outcome.http_status().unwrap_or(0)),
            reason: format!("webhook {}: refused, not retried", outcome.describe()),
        },
    }
}

/// WhatsApp/SMS: the linked message goes through the one-off send path
/// (claim in `message_sends`, Twilio or the local sink, error mapping), then
/// the ledger row follows the message's status.
async fn via_twilio(
    delivery_id: uuid::Uuid,
    message_id: uuid::Uuid,
    msg: &Message<'_>,
    deps: &Deps,
) -> Outcome {
    let job = SendMessage { v: 1, message_id };
    let outcome = messages::send(&job, msg, deps).await;
    let synced = async {
        let client = deps.pool.get().await?;
        delivery::sync_from_message(&client, message_id).await
    };
    match synced.await {
        Ok(Some(status)) if status != "sending" => {
            tracing::info!(delivery_id = %delivery_id, message_id = %message_id, status = %status, "campaign message handled");
            Outcome::Done
        }
        Ok(_) => match outcome {
            Outcome::DeadLetter { .. } => give_up_uncertain(delivery_id, deps).await,
            other => other,
        },
        Err(e) => {
            tracing::warn!(delivery_id = %delivery_id, error = %crm_domain::db::loggable(&e), "updating the ledger from the message failed; will retry");
            Outcome::Retry {
                delay: deps.backoff.delay(msg.receive_count),
            }
        }
    }
}

/// The e-mail provider: SES v2 when `SES_FROM_ADDRESS` is set, else the
/// local sink, or in production [`Unconfigured`] (said loudly once, at
/// start-up).
pub fn mailer(config: &CampaignConfig) -> std::sync::Arc<dyn crm_domain::mail::Mailer> {
    match &config.ses {
        Some(ses) => {
            tracing::info!(configuration_set = ?ses.configuration_set, "e-mail through Amazon SES v2");
            std::sync::Arc::new(crm_platform::email::SesMailer::new(ses.clone()))
        }
        None if config.production => {
            tracing::error!(
                "APP_ENV=production without SES_FROM_ADDRESS: campaign e-mails and e-mail notifications FAIL (no local sink in production)"
            );
            std::sync::Arc::new(Unconfigured)
        }
        None => {
            tracing::warn!(
                "SES_FROM_ADDRESS not set: e-mails go to the LOCAL MAIL SINK (recorded, not sent)"
            );
            std::sync::Arc::new(crm_domain::mail::LocalMailer)
        }
    }
}

/// Production without `SES_FROM_ADDRESS`: every e-mail fails permanently with
/// this reason, so the ledger shows it instead of a local-sink "sent".
#[derive(Debug, Clone, Copy)]
pub struct Unconfigured;

impl crm_domain::mail::Mailer for Unconfigured {
    fn send<'a>(
        &'a self,
        _email: &'a OutboundEmail,
    ) -> crm_domain::outbox::BoxFuture<'a, Result<crm_domain::mail::MailSent, MailError>> {
        Box::pin(async {
            Err(MailError::Permanent(
                "e-mail is not configured (SES_FROM_ADDRESS is not set)".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<CampaignConfig, ConfigError> {
        CampaignConfig::from_env(
            &Env::from_pairs(pairs.iter().copied()),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn nothing_set_means_local_sinks_and_no_links() {
        let c = load(&[]).unwrap();
        assert!(c.links.is_none() && c.webhook.is_none() && c.ses.is_none());
    }

    #[test]
    fn links_need_a_base_url_and_a_sane_ttl() {
        let e = load(&[(UNSUBSCRIBE_SECRET, "s3cret-unsub-0123456789abcdef-0123")]).unwrap_err();
        assert_eq!(e.name, PUBLIC_BASE_URL);
        let c = load(&[
            (UNSUBSCRIBE_SECRET, "s3cret-unsub-0123456789abcdef-0123"),
            (PUBLIC_BASE_URL, "https://crm.example.com/"),
        ])
        .unwrap();
        let short = load(&[
            (UNSUBSCRIBE_SECRET, "s3cret-unsub"),
            (PUBLIC_BASE_URL, "https://crm.example.com/"),
            ("APP_ENV", "staging"),
        ])
        .unwrap_err();
        assert_eq!(short.name, UNSUBSCRIBE_SECRET, "a short key outside test");
        let links = c.links.unwrap();
        assert_eq!(links.base_url, "https://crm.example.com");
        assert_eq!(links.ttl, Duration::from_secs(90 * 86_400));
        assert!(!format!("{links:?}").contains("s3cret"));
        let e = load(&[
            (UNSUBSCRIBE_SECRET, "s3cret-unsub-0123456789abcdef-0123"),
            (PUBLIC_BASE_URL, "https://crm.example.com"),
            (UNSUBSCRIBE_TTL_DAYS, "0"),
        ])
        .unwrap_err();
        assert_eq!(e.name, UNSUBSCRIBE_TTL_DAYS);
    }

    #[test]
    fn the_webhook_channel_needs_a_whsec_secret_and_never_echoes_the_url() {
        let e = load(&[(WEBHOOK_URL, "https://push.example.com/h?token=t0p")]).unwrap_err();
        assert_eq!(e.name, WEBHOOK_SECRET);
        let e = load(&[(WEBHOOK_URL, "ftp://push.example.com/?token=t0p")]).unwrap_err();
        assert_eq!(e.name, WEBHOOK_URL);
        assert!(!e.reason.contains("t0p"));
        let c = load(&[
            (WEBHOOK_URL, "https://push.example.com/h?token=t0p"),
            (WEBHOOK_SECRET, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("t0p"));
    }

    #[test]
    fn ses_needs_an_address() {
        assert_eq!(load(&[(SES_FROM, "acme")]).unwrap_err().name, SES_FROM);
        let c = load(&[
            (SES_FROM, "Acme <news@mail.acme.com>"),
            (SES_CONFIG_SET, "campaigns"),
        ])
        .unwrap();
        let ses = c.ses.unwrap();
        assert_eq!(ses.from, "Acme <news@mail.acme.com>");
        assert_eq!(ses.configuration_set.as_deref(), Some("campaigns"));
    }
}
