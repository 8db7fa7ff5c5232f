//! The campaign worker: consumes the campaign queue (SQS in AWS, in-process
//! locally). Its one job kind, `run_campaign`, drives one campaign through
//! its ledger (`crm_domain::campaigns::runner` holds the SQL):
//!
//! 1. take the campaign's lease (one runner per campaign; a duplicate job
//!    for a campaign another live runner holds is acknowledged and dropped);
//! 2. `queued` → snapshot the segment into `campaign_deliveries` → `sending`;
//! 3. every batch: stop when the campaign is paused or cancelled or the
//!    `crm` module is off; pause it (reason, audit) when the channel is
//!    disabled or the error threshold trips; release the next
//!    `rate × interval` queued rows with their send jobs in one statement,
//!    publish those jobs right after commit (the outbox relay is the safety
//!    net), sleep to honour the channel's rate (read every batch);
//! 4. finish when no row is `queued` or `sending` (counts audited); or, before
//!    the invocation's time budget ends, give the lease up and enqueue its
//!    own continuation through the outbox.
//!
//! A runner that dies leaves its lease to expire: the redelivered job, a
//! resume or a continuation takes over from the ledger, and rows it had
//! released (their jobs committed with them) are never released again.

pub mod config;
pub mod local;
pub mod run;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use crm_domain::{
    jobs::CampaignJob,
    outbox::{Publisher, QueueName},
};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    queue::SqsVisibility,
    sqs_batch,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tracing::Instrument;

pub use config::RunnerConfig;
pub use run::{RunOutcome, run_campaign};

/// Built once per cold start; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub pool: PgPool,
    /// Publishes the jobs a batch released right after commit (and the
    /// continuation). `None`: the scheduled outbox relay publishes them.
    pub publisher: Option<Arc<dyn Publisher>>,
    pub config: Arc<RunnerConfig>,
    /// In SQS, a failed run is received again after [`RETRY_AFTER`] (its
    /// visibility changed) instead of the queue's long visibility timeout.
    /// `None`: the queue's own timeout applies (tests, `cargo lambda invoke`).
    pub visibility: Option<Arc<SqsVisibility>>,
}

/// How soon a run that failed (database, publish) is received again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

impl Deps {
    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with(
            build_pool(&common.database)?,
            None,
            RunnerConfig::from_env(env)?,
        ))
    }

    pub fn with(pool: PgPool, publisher: Option<Arc<dyn Publisher>>, config: RunnerConfig) -> Self {
        Self {
            pool,
            publisher,
            config: Arc::new(config),
            visibility: None,
        }
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
    /// Run, stopped, handed to a continuation, or dropped as a duplicate: delete it.
    Done(RunOutcome),
    /// A step failed (database, publish): receive it again later.
    Retry { reason: String },
    /// Not a job: recorded in `poison_messages`, belongs in the dead-letter queue.
    DeadLetter { reason: String },
}

/// The Lambda handler: every record concurrently (the function is
/// configured with batches of one); `budget` is how long this invocation may
/// release batches before handing over to a continuation.
pub async fn handle(event: SqsEvent, deps: &Deps, budget: Duration) -> SqsBatchResponse {
    let deadline = Instant::now() + budget;
    sqs_batch::run(event.records, |record| {
        let deps = deps.clone();
        async move { process_record(record, &deps, deadline).await }
    })
    .await
}

async fn process_record(record: SqsMessage, deps: &Deps, deadline: Instant) -> bool {
    let msg = Message {
        message_id: record.message_id.as_deref().unwrap_or_default(),
        body: record.body.as_deref().unwrap_or_default(),
        receive_count: sqs_batch::receive_count(&record),
    };
    let delay = match process(&msg, deps, deadline).await {
        Outcome::Done(_) => return true,
        Outcome::Retry { .. } => RETRY_AFTER,
        // Visible again at once: the redrive to the DLQ need not wait.
        Outcome::DeadLetter { .. } => Duration::ZERO,
    };
    if let (Some(visibility), Some(receipt)) = (&deps.visibility, record.receipt_handle.as_deref())
        && let Err(e) = visibility.delay(receipt, delay).await
    {
        // The queue's own visibility timeout then applies; still retried.
        tracing::warn!(message_id = msg.message_id, error = %crm_domain::db::loggable(&e), "could not delay the message");
    }
    false
}

/// Processes one message until `deadline`; the shared core of the Lambda
/// handler and the local consumer.
pub async fn process(msg: &Message<'_>, deps: &Deps, deadline: Instant) -> Outcome {
    let span = tracing::info_span!(
        "campaign_worker",
        message_id = msg.message_id,
        receive_count = msg.receive_count,
        campaign_id = tracing::field::Empty,
    );
    async move {
        let job = match parse(msg.body) {
            Ok(job) => job,
            Err(reason) => return poison(msg, reason, deps).await,
        };
        let CampaignJob::RunCampaign(job) = job;
        tracing::Span::current().record("campaign_id", tracing::field::display(job.campaign_id));
        match run_campaign(job.campaign_id, deps, deadline).await {
            Ok(outcome) => {
                tracing::info!(outcome = ?outcome, "campaign run ended");
                Outcome::Done(outcome)
            }
            Err(e) => {
                let reason = crm_domain::db::loggable(&e);
                tracing::warn!(error = %reason, "campaign run failed; the job will be received again");
                Outcome::Retry { reason }
            }
        }
    }
    .instrument(span)
    .await
}

/// The job in a body, or why not, in words that quote nothing of the body.
fn parse(body: &str) -> Result<CampaignJob, String> {
    match CampaignJob::parse(body) {
        Ok(CampaignJob::RunCampaign(job)) if job.v != 1 => {
            Err(format!("run_campaign v{} is not supported", job.v))
        }
        Ok(job) => Ok(job),
        Err(e) => Err(sqs_batch::unreadable(&e)),
    }
}

async fn poison(msg: &Message<'_>, reason: String, deps: &Deps) -> Outcome {
    tracing::error!(reason = %reason, "malformed message: recorded, left for the dead-letter queue");
    sqs_batch::record_poison(
        &deps.pool,
        QueueName::Campaign,
        msg.message_id,
        &reason,
        msg.receive_count,
    )
    .await;
    Outcome::DeadLetter { reason }
}
