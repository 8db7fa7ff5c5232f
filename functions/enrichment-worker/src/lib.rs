//! The enrichment worker: consumes the enrichment queue (SQS in AWS,
//! in-process locally). Its one job kind, `enrich_lead`, carries a C2S hook
//! element the webhook accepted (`webhook_events.id`, the lead id, the hook
//! action), and moves that event received → completed | partial | failed |
//! skipped, with the run's reasons in `enrichment_runs`.
//!
//! - `on_create_lead`: validate e-mail and phone, look both up in Diretrix
//!   at once (deduplicated across workers), decide who they point at, read
//!   each CPF's data from the Work API, post the note to C2S at most once,
//!   then store the parties, link them and record the outcome in one
//!   transaction (`enrich`).
//! - `on_update_lead`: the same, only when the lead's contact hash differs
//!   from the last enriching run's; otherwise `skipped`.
//! - `on_close_lead`: recorded, and one notification per manager of the
//!   seller queued for the send worker (`close`).
//!
//! Timeouts, 5xx and 429 are retried: the message is reported failed and its
//! next receive delayed by exponential backoff. On the `ENRICHMENT_MAX_ATTEMPTS`-th
//! receive the event is failed with "gave up after N attempts: …" and SQS
//! moves the message to the DLQ. A body that is not a job is recorded in
//! `poison_messages` and dead-lettered. Logs carry ids only.

mod clients;
mod close;
pub mod config;
mod enrich;
pub mod local;
mod lookup;

pub use clients::{C2s, Diretrix, DiretrixQuery, Pacer, PostOutcome, Work};
pub use config::EnrichmentConfig;
pub use lookup::cache_key;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use crm_domain::{
    enrichment::store,
    jobs::{EnrichLead, EnrichmentJob},
    outbox::QueueName,
    webhooks_out::Backoff,
};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    queue::SqsVisibility,
    sqs_batch,
};
use std::{sync::Arc, time::Duration};
use tracing::Instrument;

/// Built once per cold start; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub pool: PgPool,
    pub config: Arc<EnrichmentConfig>,
    /// `None`: the local sink for that provider.
    pub diretrix: Option<Arc<Diretrix>>,
    pub work: Option<Arc<Work>>,
    pub c2s: Option<Arc<C2s>>,
    pub backoff: Backoff,
    /// In SQS, retries wait by changing the message's visibility timeout.
    pub visibility: Option<Arc<SqsVisibility>>,
    /// When this invocation must be done (the Lambda's remaining time less
    /// [`DEADLINE_MARGIN`]): waits stop and no paid call or C2S post starts
    /// that could not finish before it; the job is retried instead. `None`:
    /// no deadline (the local consumer).
    pub deadline: Option<tokio::time::Instant>,
}

/// Kept back from the Lambda's remaining time to record outcomes and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

impl Deps {
    /// The time left before the deadline (`None`: no deadline).
    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// Whether a call bounded by `timeout` finishes before the deadline.
    pub(crate) fn has_time_for(&self, timeout: Duration) -> bool {
        self.time_left().is_none_or(|left| left >= timeout)
    }
}

fn http_err(name: &str, e: reqwest::Error) -> ConfigError {
    ConfigError {
        name: name.into(),
        reason: format!("building the HTTP client: {e}"),
    }
}

impl Deps {
    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        Self::with(
            build_pool(&common.database)?,
            EnrichmentConfig::from_env(env, common.app_env)?,
        )
    }

    pub fn with(pool: PgPool, config: EnrichmentConfig) -> Result<Self, ConfigError> {
        let diretrix = match &config.diretrix {
            Some(c) => Some(Arc::new(Diretrix {
                config: c.clone(),
                http: clients::client(config.diretrix_call)
                    .map_err(|e| http_err("DIRETRIX_TIMEOUT_MS", e))?,
                pacer: Pacer::new(config.diretrix_call.min_interval),
            })),
            None => None,
        };
        let work = match &config.work {
            Some(c) => Some(Arc::new(Work {
                config: c.clone(),
                http: clients::client(config.work_call)
                    .map_err(|e| http_err("WORK_API_TIMEOUT_MS", e))?,
                pacer: Pacer::new(config.work_call.min_interval),
            })),
            None => None,
        };
        let c2s = match &config.c2s {
            Some(c) => Some(Arc::new(C2s {
                config: c.clone(),
                http: clients::client(config.c2s_call)
                    .map_err(|e| http_err("C2S_TIMEOUT_MS", e))?,
                pacer: Pacer::new(config.c2s_call.min_interval),
            })),
            None => None,
        };
        for (missing, what) in [
            (
                diretrix.is_none(),
                "DIRETRIX_* not set: Diretrix lookups answer \"not found (local sink)\"",
            ),
            (
                work.is_none(),
                "WORK_API not set: Work API lookups answer \"no data (local sink)\"",
            ),
            (
                c2s.is_none(),
                "C2S_BASE_URL/C2S_TOKEN not set: enrichment notes go to the LOCAL SINK (recorded, not posted)",
            ),
        ] {
            if missing {
                tracing::warn!("LOCAL SINK: {what}");
            }
        }
        tracing::info!(
            max_attempts = config.max_attempts,
            dedup_window_secs = config.dedup_window.as_secs(),
            "enrichment worker configured"
        );
        Ok(Self {
            pool,
            config: Arc::new(config),
            diretrix,
            work,
            c2s,
            backoff: Backoff::default(),
            visibility: None,
            deadline: None,
        })
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
    /// Finished (whatever the event's status): delete it.
    Done,
    /// Try again after `delay`.
    Retry { delay: Duration, reason: String },
    /// Gave up or not a job; the reason is recorded. Belongs in the DLQ.
    DeadLetter { reason: String },
}

/// The Lambda handler with the invocation's deadline: `remaining` is the
/// Lambda context's time left; the handler stops starting work
/// [`DEADLINE_MARGIN`] before it.
pub async fn handle_within(event: SqsEvent, deps: &Deps, remaining: Duration) -> SqsBatchResponse {
    let mut deps = deps.clone();
    deps.deadline = Some(tokio::time::Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN));
    handle(event, &deps).await
}

/// The Lambda handler: every record concurrently; those not done are
/// returned as batch item failures.
pub async fn handle(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let resp = sqs_batch::run(event.records, |record| {
        let deps = deps.clone();
        async move { process_record(record, &deps).await }
    })
    .await;
    purge_expired_lookups(deps).await;
    resp
}

/// Expired lookups deleted per invocation (best effort; the next one goes on).
pub const PURGE_BATCH: i64 = 200;

/// Best effort: a bounded batch of expired lookup answers deleted.
pub async fn purge_expired_lookups(deps: &Deps) {
    let purged = async {
        let client = deps.pool.get().await?;
        store::purge_lookups(&client, PURGE_BATCH).await
    };
    match purged.await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "expired lookups purged"),
        Err(e) => {
            tracing::warn!(error = %crm_domain::db::loggable(&e), "could not purge expired lookups")
        }
    }
}

async fn process_record(record: SqsMessage, deps: &Deps) -> bool {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let msg = Message {
        message_id,
        body: record.body.as_deref().unwrap_or_default(),
        receive_count: sqs_batch::receive_count(&record),
    };
    let delay = match process(&msg, deps).await {
        Outcome::Done => return true,
        Outcome::Retry { delay, .. } => delay,
        Outcome::DeadLetter { .. } => Duration::ZERO,
    };
    if let (Some(visibility), Some(receipt)) = (&deps.visibility, record.receipt_handle.as_deref())
        && let Err(e) = visibility.delay(receipt, delay).await
    {
        tracing::warn!(message_id, error = %crm_domain::db::loggable(&e), "could not delay the message");
    }
    false
}

/// What a flow step came to.
#[derive(Debug)]
pub(crate) enum Step {
    /// The run and the event are finished.
    Finished,
    /// Transient: try again later (reason safe to record).
    Retry(String),
}

/// Processes one message; the shared core of the Lambda handler and the local consumer.
pub async fn process(msg: &Message<'_>, deps: &Deps) -> Outcome {
    let span = tracing::info_span!(
        "enrichment_worker",
        message_id = msg.message_id,
        receive_count = msg.receive_count,
        event_id = tracing::field::Empty,
        lead_id = tracing::field::Empty,
    );
    async move {
        let job = match parse(msg.body) {
            Ok(job) => job,
            Err(reason) => {
                tracing::error!(reason = %reason, "malformed message: recorded, left for the dead-letter queue");
                poison(msg, &reason, deps).await;
                return Outcome::DeadLetter { reason };
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", tracing::field::display(job.event_id));
        span.record("lead_id", job.lead_id.as_str());
        let started = tokio::time::Instant::now();
        let outcome = run(&job, msg, deps).await;
        tracing::info!(outcome = ?outcome_kind(&outcome), elapsed_ms = started.elapsed().as_millis() as u64, "enrichment job");
        outcome
    }
    .instrument(span)
    .await
}

fn outcome_kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::DeadLetter { .. } => "dead_letter",
    }
}

/// The job in a body, or why not, in words that quote nothing of the body.
fn parse(body: &str) -> Result<EnrichLead, String> {
    match EnrichmentJob::parse(body) {
        Ok(EnrichmentJob::EnrichLead(job)) if job.v != 1 => {
            Err(format!("enrich_lead v{} is not supported", job.v))
        }
        Ok(EnrichmentJob::EnrichLead(job))
            if !matches!(
                job.hook_action.as_str(),
                "on_create_lead" | "on_update_lead" | "on_close_lead"
            ) =>
        {
            Err("enrich_lead with an unknown hook_action".into())
        }
        Ok(EnrichmentJob::EnrichLead(job)) => Ok(job),
        Err(e) => Err(sqs_batch::unreadable(&e)),
    }
}

async fn poison(msg: &Message<'_>, reason: &str, deps: &Deps) {
    sqs_batch::record_poison(
        &deps.pool,
        QueueName::Enrichment,
        msg.message_id,
        reason,
        msg.receive_count,
    )
    .await;
}

/// The event's gate, the run, the flow, and what a transient failure becomes.
async fn run(job: &EnrichLead, msg: &Message<'_>, deps: &Deps) -> Outcome {
    let prepared = async {
        let client = deps.pool.get().await?;
        let status = store::event_status(&client, job.event_id).await?;
        let lead = store::load_lead(&client, &job.lead_id).await?;
        anyhow::Ok((status, lead))
    };
    let (status, lead) = match prepared.await {
        Ok(v) => v,
        Err(e) => {
            return retry_or_give_up(None, job, msg, &crm_domain::db::loggable(&e), deps).await;
        }
    };
    match status.as_deref() {
        None => {
            let reason = "the event does not exist";
            tracing::error!(
                reason,
                "enrichment job for a missing event: recorded, acknowledged"
            );
            poison(msg, reason, deps).await;
            return Outcome::Done;
        }
        Some("received") => {}
        Some(other) => {
            tracing::info!(status = other, "event already finished: acknowledged");
            return Outcome::Done;
        }
    }
    let Some(lead) = lead else {
        let failed = async {
            let client = deps.pool.get().await?;
            store::fail_event(&client, job.event_id, "the lead does not exist").await
        };
        return match failed.await {
            Ok(()) => Outcome::Done,
            Err(e) => retry_or_give_up(None, job, msg, &crm_domain::db::loggable(&e), deps).await,
        };
    };
    let started = async {
        let client = deps.pool.get().await?;
        store::start_run(
            &client,
            job.event_id,
            &lead.id,
            &job.hook_action,
            &lead.contact_hash,
        )
        .await
    };
    let run = match started.await {
        Ok(Some(run)) => run,
        Ok(None) => {
            tracing::info!("event finished meanwhile: acknowledged");
            return Outcome::Done;
        }
        Err(e) => {
            return retry_or_give_up(None, job, msg, &crm_domain::db::loggable(&e), deps).await;
        }
    };
    let step = match job.hook_action.as_str() {
        "on_close_lead" => close::close(job, &lead, run.id, deps).await,
        action => enrich::enrich(job, &lead, run.id, action == "on_update_lead", deps).await,
    };
    match step {
        Ok(Step::Finished) => Outcome::Done,
        Ok(Step::Retry(reason)) => retry_or_give_up(Some(run.id), job, msg, &reason, deps).await,
        Err(e) => {
            retry_or_give_up(Some(run.id), job, msg, &crm_domain::db::loggable(&e), deps).await
        }
    }
}

/// A transient failure: retried with backoff, or, on the last receive, the
/// event failed with the reason (then SQS dead-letters the message).
async fn retry_or_give_up(
    run: Option<uuid::Uuid>,
    job: &EnrichLead,
    msg: &Message<'_>,
    reason: &str,
    deps: &Deps,
) -> Outcome {
    if msg.receive_count < deps.config.max_attempts {
        tracing::warn!(reason = %reason, "transient failure: will retry");
        return Outcome::Retry {
            delay: deps.backoff.delay(msg.receive_count),
            reason: reason.to_string(),
        };
    }
    let why = format!("gave up after {} attempts: {reason}", msg.receive_count);
    let recorded = async {
        let mut client = deps.pool.get().await?;
        let tx = client.transaction().await?;
        match run {
            Some(run) => {
                let finish = store::Finish {
                    status: "failed",
                    identity: None,
                    validation: None,
                    reasons: std::slice::from_ref(&why),
                    error: Some(&why),
                };
                store::finish(&tx, run, job.event_id, &finish).await?
            }
            None => store::fail_event(&tx, job.event_id, &why).await?,
        }
        // Retryable: a re-send by C2S takes the event over.
        store::mark_gave_up(&tx, job.event_id, &why).await?;
        tx.commit().await?;
        anyhow::Ok(())
    };
    if let Err(e) = recorded.await {
        tracing::error!(error = %crm_domain::db::loggable(&e), "could not record the give-up; poison row instead");
        poison(msg, &why, deps).await;
    }
    tracing::error!(reason = %why, "enrichment given up: the message goes to the dead-letter queue");
    Outcome::DeadLetter { reason: why }
}
