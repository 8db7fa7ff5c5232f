//! The send worker: consumes the send queue (SQS in AWS, in-process
//! locally). Two job kinds: `deliver_webhook` posts a signed Standard
//! Webhooks event to every configured URL (below), and `send_message` hands
//! one queued WhatsApp/SMS message to Twilio (`messages`, `twilio`).
//!
//! Each URL is its own delivery (`webhook_deliveries`, unique per event and
//! URL), so a job received twice, or retried because another URL failed,
//! never posts again to a URL that already took it. The URLs of one job are
//! posted to concurrently, so a job takes about one attempt's time (at most
//! `OUTBOUND_WEBHOOK_TIMEOUT_MS`) however many URLs are slow. A message is
//! reported failed (partial batch failure) while any delivery still has to
//! be retried, with its next receive delayed by exponential backoff; a
//! message whose deliveries are dead, or that is not a job, is reported
//! failed too so that SQS's redrive moves it to the dead-letter queue.
//!
//! Every message that ends in the dead-letter queue has its reason in
//! PostgreSQL: a dead delivery's `last_error`, or a `poison_messages` row.
//! On the last receive (`SEND_MAX_ATTEMPTS`) a delivery that could not be
//! attempted — another holder's claim, a database error — is marked dead
//! with "receives exhausted while …" rather than left pending.

pub mod campaigns;
pub mod config;
mod deliver;
pub mod local;
mod managers;
mod messages;
pub mod twilio;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use crm_domain::{
    jobs::{DeliverWebhook, Job},
    outbox::QueueName,
    webhooks_out::{
        self, Backoff, Verdict,
        store::{self, AttemptRecord, Claim, DeliveryStatus, TargetRef},
    },
};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    queue::SqsVisibility,
    sqs_batch,
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tracing::Instrument;

pub use config::{SendConfig, Target};

/// Built once per cold start; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct Deps {
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub config: Arc<SendConfig>,
    pub backoff: Backoff,
    /// In SQS, retries wait by changing the message's visibility timeout.
    /// `None`: the queue's own visibility timeout applies (tests, `cargo lambda invoke`).
    pub visibility: Option<Arc<SqsVisibility>>,
    /// Presigned GET URLs of outbound media (`MediaUrl`); `None` without a
    /// bucket (locally), when media messages go out without `MediaUrl`.
    pub media: Option<Arc<dyn crm_platform::blob::Presigner>>,
    /// E-mail provider (campaign e-mails, manager notifications): the local
    /// sink unless a provider is configured.
    pub mailer: Arc<dyn crm_domain::mail::Mailer>,
}

impl Deps {
    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        let mut config = SendConfig::from_env(env)?;
        // Deployed, campaign channels without a provider fail visibly instead
        // of being marked sent by a local sink.
        config.campaigns.production = common.app_env == crm_platform::config::AppEnv::Production;
        Self::with(build_pool(&common.database)?, config)
    }

    pub fn with(pool: PgPool, config: SendConfig) -> Result<Self, ConfigError> {
        let http = deliver::client(&config).map_err(|e| ConfigError {
            name: "OUTBOUND_WEBHOOK_TIMEOUT_MS".into(),
            reason: format!("building the HTTP client: {e}"),
        })?;
        if config.twilio.is_none() {
            tracing::warn!(
                "TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN not set: outbound messages go to the LOCAL SINK (recorded, not sent)"
            );
        }
        if config.targets.is_empty() {
            tracing::info!(
                "OUTBOUND_WEBHOOK_URLS is empty: outbound webhooks are acknowledged without delivery"
            );
        } else {
            tracing::info!(
                targets = config.targets.len(),
                max_attempts = config.max_attempts,
                "outbound webhooks configured"
            );
        }
        let mailer = campaigns::mailer(&config.campaigns);
        Ok(Self {
            pool,
            http,
            config: Arc::new(config),
            backoff: Backoff::default(),
            visibility: None,
            media: None,
            mailer,
        })
    }

    /// How long a delivery stays claimed: one attempt plus a margin.
    fn lease(&self) -> Duration {
        self.config.timeout + Duration::from_secs(30)
    }
}

/// A queue message as the worker needs it, from SQS or the in-process queue.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
    /// 1 on the first receive (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done with: delete it.
    Done,
    /// Some delivery must be tried again; receive it again after `delay`.
    Retry { delay: Duration },
    /// Cannot succeed (not a job, a delivery ran out of attempts, or the
    /// receives ran out with deliveries unfinished); the reason is recorded.
    /// It belongs in the dead-letter queue.
    DeadLetter { reason: String },
}

/// The Lambda handler: every record of the batch concurrently; the ids of
/// those not done are returned as batch item failures.
pub async fn handle(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    sqs_batch::run(event.records, |record| {
        let deps = deps.clone();
        async move { process_record(record, &deps).await }
    })
    .await
}

/// One SQS record: processes it and, when it is to be retried, delays its
/// next receive. Returns whether it is done.
async fn process_record(record: SqsMessage, deps: &Deps) -> bool {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let receive_count = sqs_batch::receive_count(&record);
    let msg = Message {
        message_id,
        body: record.body.as_deref().unwrap_or_default(),
        receive_count,
    };
    let delay = match process(&msg, deps).await {
        Outcome::Done => return true,
        Outcome::Retry { delay } => delay,
        // Visible again at once: the redrive to the DLQ need not wait out the backoff.
        Outcome::DeadLetter { .. } => Duration::ZERO,
    };
    if let (Some(visibility), Some(receipt)) = (&deps.visibility, record.receipt_handle.as_deref())
        && let Err(e) = visibility.delay(receipt, delay).await
    {
        // The queue's own visibility timeout then applies; still retried.
        tracing::warn!(message_id, error = %crm_domain::db::loggable(&e), "could not delay the message");
    }
    false
}

/// Processes one message; the shared core of the Lambda handler and the local consumer.
pub async fn process(msg: &Message<'_>, deps: &Deps) -> Outcome {
    let span = tracing::info_span!(
        "send_worker",
        message_id = msg.message_id,
        receive_count = msg.receive_count,
        event_id = tracing::field::Empty
    );
    async move {
        match parse(msg.body) {
            Ok(Job::DeliverWebhook(job)) => {
                tracing::Span::current().record("event_id", tracing::field::display(job.event_id));
                deliver_all(&job, msg, deps).await
            }
            Ok(Job::SendMessage(job)) => {
                tracing::Span::current()
                    .record("event_id", tracing::field::display(job.message_id));
                messages::send(&job, msg, deps).await
            }
            Ok(Job::SendCampaignMessage(job)) => {
                tracing::Span::current()
                    .record("event_id", tracing::field::display(job.delivery_id));
                campaigns::send(&job, msg, deps).await
            }
            Ok(Job::NotifyManager(job)) => {
                tracing::Span::current()
                    .record("event_id", tracing::field::display(job.notification_id));
                managers::notify(&job, msg, deps).await
            }
            Err(reason) => poison(msg, reason, deps).await,
        }
    }
    .instrument(span)
    .await
}

/// The job in a body, or why not, in words that quote nothing of the body.
fn parse(body: &str) -> Result<Job, String> {
    match Job::parse(body) {
        Ok(Job::DeliverWebhook(job)) if job.v != 1 => {
            Err(format!("deliver_webhook v{} is not supported", job.v))
        }
        Ok(Job::SendMessage(job)) if job.v != 1 => {
            Err(format!("send_message v{} is not supported", job.v))
        }
        Ok(Job::SendCampaignMessage(job)) if job.v != 1 => {
            Err(format!("send_campaign_message v{} is not supported", job.v))
        }
        Ok(Job::NotifyManager(job)) if job.v != 1 => {
            Err(format!("notify_manager v{} is not supported", job.v))
        }
        Ok(job) => Ok(job),
        Err(e) => Err(sqs_batch::unreadable(&e)),
    }
}

pub(crate) async fn poison(msg: &Message<'_>, reason: String, deps: &Deps) -> Outcome {
    tracing::error!(reason = %reason, "malformed message: recorded, left for the dead-letter queue");
    sqs_batch::record_poison(
        &deps.pool,
        QueueName::Send,
        msg.message_id,
        &reason,
        msg.receive_count,
    )
    .await;
    Outcome::DeadLetter { reason }
}

/// What one URL's turn came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The delivery's status after this turn (`Pending`: retry it later).
    Status(DeliveryStatus),
    /// Another holder's claim (a concurrent copy of the job, or an earlier
    /// receive that died mid-attempt): not attempted now.
    Busy,
}

/// Posts to every URL at once, each its own task: one slow or failing URL
/// neither delays nor affects the others, so a job takes about one attempt's
/// time however many URLs there are. Each delivery is claimed, attempted and
/// recorded on its own.
async fn deliver_all(job: &DeliverWebhook, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let Some(key) = deps.config.key.as_ref() else {
        // No URLs configured (said once at start): nothing to deliver.
        return Outcome::Done;
    };
    let turns = attempt_all(job, key, msg, deps).await;
    let exhausted = msg.receive_count >= deps.config.max_attempts;
    let mut dead = 0usize;
    // Deliveries left unfinished, with why.
    let mut unfinished: Vec<(&Target, String)> = Vec::new();
    for (target, turn) in deps.config.targets.iter().zip(turns) {
        match turn {
            Ok(Turn::Status(DeliveryStatus::Delivered | DeliveryStatus::Failed)) => {}
            Ok(Turn::Status(DeliveryStatus::Dead)) => dead += 1,
            Ok(Turn::Status(DeliveryStatus::Pending)) => {
                unfinished.push((target, "its last attempt asked for a retry".into()));
            }
            Ok(Turn::Busy) => {
                unfinished.push((target, "another worker held the delivery".into()));
            }
            Err(e) => {
                let cause = crm_domain::db::loggable(&e);
                tracing::warn!(target = %target.origin, error = %cause, "delivery step failed; will retry");
                unfinished.push((target, format!("a delivery step failed ({cause})")));
            }
        }
    }
    if !unfinished.is_empty() && !exhausted {
        return Outcome::Retry {
            delay: deps.backoff.delay(msg.receive_count),
        };
    }
    if !unfinished.is_empty() {
        // SQS moves the message to the DLQ after this receive whatever we
        // answer: record why for every delivery it leaves behind.
        return give_up(job, &unfinished, dead, msg, deps).await;
    }
    if dead > 0 {
        Outcome::DeadLetter {
            reason: format!("{dead} webhook delivery(ies) ran out of attempts"),
        }
    } else {
        Outcome::Done
    }
}

/// Runs `deliver_one` for every target concurrently; results in target order.
async fn attempt_all(
    job: &DeliverWebhook,
    key: &webhooks_out::SigningKey,
    msg: &Message<'_>,
    deps: &Deps,
) -> Vec<anyhow::Result<Turn>> {
    let targets = &deps.config.targets;
    let job = Arc::new(job.clone());
    let body: Arc<[u8]> = webhooks_out::body(&job).into();
    let message_id: Arc<str> = msg.message_id.into();
    let receive_count = msg.receive_count;
    let mut tasks = tokio::task::JoinSet::new();
    let mut slot = HashMap::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let (job, body, message_id) = (job.clone(), body.clone(), message_id.clone());
        let (target, key, deps) = (target.clone(), key.clone(), deps.clone());
        let task = tasks.spawn(
            async move {
                let carrier = Carrier {
                    message_id: &message_id,
                    receive_count,
                };
                deliver_one(&job, &target, &key, &body, carrier, &deps).await
            }
            .in_current_span(),
        );
        slot.insert(task.id(), i);
    }
    let mut turns: Vec<Option<anyhow::Result<Turn>>> = targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (task, turn) = match joined {
            Ok((task, turn)) => (task, turn),
            Err(e) => (e.id(), Err(anyhow::anyhow!("the delivery task panicked"))),
        };
        if let Some(&i) = slot.get(&task) {
            turns[i] = Some(turn);
        }
    }
    turns
        .into_iter()
        .map(|t| t.unwrap_or_else(|| Err(anyhow::anyhow!("the delivery task was lost"))))
        .collect()
}

/// The last receive of a message left deliveries unfinished: each is marked
/// dead with its cause, so the message that reaches the dead-letter queue
/// has its reason on record. If even that cannot be written, the message is
/// recorded in `poison_messages` instead (best effort: the database may be
/// what failed).
async fn give_up(
    job: &DeliverWebhook,
    unfinished: &[(&Target, String)],
    dead_before: usize,
    msg: &Message<'_>,
    deps: &Deps,
) -> Outcome {
    let reason = format!(
        "receives exhausted ({}) with {} webhook delivery(ies) unfinished",
        msg.receive_count,
        unfinished.len()
    );
    let mut unrecorded = 0usize;
    for (target, cause) in unfinished {
        let why = format!("receives exhausted while {cause}");
        let target_ref = TargetRef {
            key: &target.key,
            origin: &target.origin,
        };
        let marked = async {
            let client = deps.pool.get().await?;
            store::give_up(&client, job.event_id, &job.event_type, &target_ref, &why).await
        };
        match marked.await {
            Ok(_) => {
                tracing::error!(target = %target.origin, reason = %why, "webhook delivery given up: dead");
            }
            Err(e) => {
                unrecorded += 1;
                tracing::error!(target = %target.origin, reason = %why, error = %crm_domain::db::loggable(&e), "could not mark the delivery dead");
            }
        }
    }
    if unrecorded > 0 {
        sqs_batch::record_poison(
            &deps.pool,
            QueueName::Send,
            msg.message_id,
            &reason,
            msg.receive_count,
        )
        .await;
    }
    let reason = if dead_before > 0 {
        format!("{reason}; {dead_before} ran out of attempts")
    } else {
        reason
    };
    Outcome::DeadLetter { reason }
}

/// What a delivery needs of its queue message.
#[derive(Debug, Clone, Copy)]
struct Carrier<'a> {
    message_id: &'a str,
    receive_count: u32,
}

/// One URL: claim, attempt, record. Returns the delivery's status after it,
/// or `Busy` when another holder has it right now.
async fn deliver_one(
    job: &DeliverWebhook,
    target: &Target,
    key: &webhooks_out::SigningKey,
    body: &[u8],
    msg: Carrier<'_>,
    deps: &Deps,
) -> anyhow::Result<Turn> {
    let target_ref = TargetRef {
        key: &target.key,
        origin: &target.origin,
    };
    // No connection is held while the receiver answers.
    let claim = {
        let client = deps.pool.get().await?;
        store::claim(
            &client,
            job.event_id,
            &job.event_type,
            &target_ref,
            deps.lease(),
        )
        .await?
    };
    let (delivery_id, attempts_before) = match claim {
        Claim::Finished(status) => {
            tracing::debug!(target = %target.origin, status = status.as_str(), "already finished");
            return Ok(Turn::Status(status));
        }
        Claim::Busy => return Ok(Turn::Busy),
        Claim::Claimed { id, attempts } => (id, attempts),
    };
    let msg_id = job.event_id.to_string();
    let (outcome, duration) = deliver::attempt(&deps.http, key, target, &msg_id, body).await;
    let attempt_no = u32::try_from(attempts_before).unwrap_or(0) + 1;
    let max = deps.config.max_attempts;
    let (status, error) = match outcome.verdict() {
        Verdict::Delivered => (DeliveryStatus::Delivered, None),
        Verdict::Reject => (
            DeliveryStatus::Failed,
            Some(format!("{}: refused, not retried", outcome.describe())),
        ),
        // The receive count also counts: SQS moves the message to the DLQ
        // after `max` receives whatever the delivery's own count says.
        Verdict::Retry if attempt_no >= max || msg.receive_count >= max => (
            DeliveryStatus::Dead,
            Some(format!(
                "{}: gave up after {attempt_no} attempt(s)",
                outcome.describe()
            )),
        ),
        Verdict::Retry => (DeliveryStatus::Pending, Some(outcome.describe())),
    };
    let record = AttemptRecord {
        outcome,
        duration,
        message_id: Some(msg.message_id),
        status,
        error: error.as_deref(),
    };
    let client = deps.pool.get().await?;
    store::record_attempt(&client, delivery_id, &record).await?;
    tracing::info!(
        delivery_id,
        target = %target.origin,
        attempt = attempt_no,
        http_status = outcome.http_status(),
        duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        status = status.as_str(),
        "webhook attempt"
    );
    Ok(Turn::Status(status))
}
