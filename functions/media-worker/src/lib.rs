//! The media worker: consumes the media queue (SQS in AWS, in-process
//! locally). Its one job kind is `fetch_twilio_media`: copy one media file of
//! an inbound Twilio message into the blob store (S3 / local folder) under
//! `media/<message_id>/<index>.<ext>`, record it in `media_objects` and point
//! `messages.media_key` at the message's first stored file.
//!
//! Only Twilio's media hosts are fetched from (`fetch::check_url`, on the
//! job's URL and on every redirect), with a content-type allow-list and a
//! size cap enforced while the body streams. The `media_objects` row is the
//! receipt: a job whose row exists is acknowledged without downloading, and
//! the object key depends only on the message and index, so a retry after a
//! crash overwrites the same object.
//!
//! Outcomes: 5xx, 429, timeouts and connection errors are retried (batch
//! item failure; on the last receive the reason goes to `poison_messages`
//! before SQS dead-letters it). A refused host, type or size, or another
//! 4xx, is permanent: recorded as a `rejected` row and acknowledged. A body
//! that is not a job is recorded in `poison_messages` and reported failed,
//! so the redrive moves it to the dead-letter queue.

pub mod config;
pub mod fetch;
pub mod local;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use crm_domain::{
    jobs::{FetchTwilioMedia, MediaJob},
    media::{self, StoredObject},
    outbox::QueueName,
    webhooks_out::store::record_poison,
};
use crm_platform::{
    blob::BlobStore,
    config::{ConfigError, Env},
    db::PgPool,
    sqs_batch,
};
use fetch::FetchError;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tracing::Instrument;

pub use config::MediaConfig;

/// Built once per cold start; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub blob: Arc<dyn BlobStore>,
    pub config: Arc<MediaConfig>,
}

impl Deps {
    pub fn with(
        pool: PgPool,
        blob: Arc<dyn BlobStore>,
        config: MediaConfig,
    ) -> Result<Self, ConfigError> {
        // Redirects are followed by hand: each hop is checked against the allow-list.
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crm-hub-media/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError {
                name: "MEDIA_FETCH_TIMEOUT_MS".into(),
                reason: format!("building the HTTP client: {e}"),
            })?;
        tracing::info!(
            hosts = config.allow_hosts.len(),
            types = config.allow_types.len(),
            max_bytes = config.max_bytes,
            "media worker configured"
        );
        Ok(Self {
            pool,
            http,
            blob,
            config: Arc::new(config),
        })
    }

    /// The configuration from the environment (with the common settings' `APP_ENV`).
    pub fn config(
        common: &crm_platform::config::CommonConfig,
        env: &Env,
    ) -> Result<MediaConfig, ConfigError> {
        MediaConfig::from_env(env, common.app_env)
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
    /// Stored, already recorded, or rejected for good (reason recorded): delete it.
    Done,
    /// Try again later (the queue's visibility timeout paces it).
    Retry { reason: String },
    /// Not a job: recorded in `poison_messages`, belongs in the dead-letter queue.
    DeadLetter { reason: String },
}

/// The Lambda handler: every record concurrently; those not done are
/// returned as batch item failures.
pub async fn handle(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    sqs_batch::run(event.records, |record| {
        let deps = deps.clone();
        async move { process_record(record, &deps).await }
    })
    .await
}

async fn process_record(record: SqsMessage, deps: &Deps) -> bool {
    let receive_count = sqs_batch::receive_count(&record);
    let msg = Message {
        message_id: record.message_id.as_deref().unwrap_or_default(),
        body: record.body.as_deref().unwrap_or_default(),
        receive_count,
    };
    process(&msg, deps).await == Outcome::Done
}

/// Processes one message; the shared core of the Lambda handler and the local consumer.
pub async fn process(msg: &Message<'_>, deps: &Deps) -> Outcome {
    let span = tracing::info_span!(
        "media_worker",
        message_id = msg.message_id,
        receive_count = msg.receive_count,
        crm_message_id = tracing::field::Empty,
        index = tracing::field::Empty,
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
        span.record("crm_message_id", tracing::field::display(job.message_id));
        span.record("index", job.index);
        let outcome = match copy(&job, msg, deps).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Retry {
                reason: format!("a step failed ({})", crm_domain::db::loggable(&e)),
            },
        };
        match &outcome {
            Outcome::Retry { reason } if msg.receive_count >= deps.config.max_attempts => {
                // SQS dead-letters it after this receive: leave the reason on record.
                let why = format!("receives exhausted ({}): {reason}", msg.receive_count);
                tracing::error!(reason = %why, "media job given up");
                poison(msg, &why, deps).await;
            }
            Outcome::Retry { reason } => tracing::warn!(reason = %reason, "media job will be retried"),
            _ => {}
        }
        outcome
    }
    .instrument(span)
    .await
}

/// The job in a body, or why not, in words that quote nothing of the body.
fn parse(body: &str) -> Result<FetchTwilioMedia, String> {
    match MediaJob::parse(body) {
        Ok(MediaJob::FetchTwilioMedia(job)) if job.v != 1 => {
            Err(format!("fetch_twilio_media v{} is not supported", job.v))
        }
        Ok(MediaJob::FetchTwilioMedia(job)) if job.index > 9 => {
            Err(format!("media index {} is out of range", job.index))
        }
        Ok(MediaJob::FetchTwilioMedia(job)) => Ok(job),
        Err(e) => Err(sqs_batch::unreadable(&e)),
    }
}

async fn poison(msg: &Message<'_>, reason: &str, deps: &Deps) {
    sqs_batch::record_poison(
        &deps.pool,
        QueueName::Media,
        msg.message_id,
        reason,
        msg.receive_count,
    )
    .await;
}

fn count(msg: &Message<'_>) -> i32 {
    i32::try_from(msg.receive_count).unwrap_or(i32::MAX)
}

/// The blob key of file `index` of a message: stable, so a retry overwrites it.
pub fn object_key(message_id: uuid::Uuid, index: u8, content_type: &str) -> String {
    format!(
        "media/{message_id}/{index}.{}",
        fetch::extension(content_type)
    )
}

/// Receipt check, fetch, store, record. `Err` is an infrastructure failure (retried).
async fn copy(job: &FetchTwilioMedia, msg: &Message<'_>, deps: &Deps) -> anyhow::Result<Outcome> {
    let index = i16::from(job.index);
    {
        // No connection is held while downloading.
        let client = deps.pool.get().await?;
        let lookup = media::find(&client, job.message_id, index).await?;
        if let media::Lookup::Recorded(status) = lookup {
            tracing::info!(status = ?status, "media already recorded: acknowledged");
            return Ok(Outcome::Done);
        }
        if lookup == media::Lookup::NoMessage {
            let reason = "the message does not exist";
            tracing::error!(
                reason,
                "media job for a missing message: recorded, acknowledged"
            );
            record_poison(
                &client,
                QueueName::Media,
                msg.message_id,
                reason,
                count(msg),
            )
            .await?;
            return Ok(Outcome::Done);
        }
    }
    let fetched = match reqwest::Url::parse(&job.url) {
        Err(_) => Err(FetchError::Reject("not a URL".into())),
        Ok(url) => match fetch::check_url(&url, &deps.config) {
            Err(why) => Err(FetchError::Reject(why.into())),
            Ok(()) => fetch::fetch(&deps.http, &url, &deps.config).await,
        },
    };
    let fetched = match fetched {
        Ok(f) => f,
        Err(FetchError::Retry(reason)) => return Ok(Outcome::Retry { reason }),
        Err(FetchError::Reject(reason)) => {
            let client = deps.pool.get().await?;
            media::record_rejected(&client, job.message_id, index, &reason).await?;
            tracing::warn!(reason = %reason, "media rejected for good: recorded, acknowledged");
            return Ok(Outcome::Done);
        }
    };
    let key = object_key(job.message_id, job.index, &fetched.content_type);
    let sha256 = hex::encode(Sha256::digest(&fetched.bytes));
    let bytes = i64::try_from(fetched.bytes.len())?;
    deps.blob
        .put(&key, fetched.bytes, &fetched.content_type)
        .await
        .map_err(|e| e.context("storing the media object"))?;
    let mut client = deps.pool.get().await?;
    let tx = client.transaction().await?;
    if media::lock_message(&tx, job.message_id).await? {
        media::record_stored(
            &tx,
            &StoredObject {
                message_id: job.message_id,
                index,
                key: &key,
                content_type: &fetched.content_type,
                bytes,
                sha256: &sha256,
            },
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(bytes, content_type = %fetched.content_type, "media stored");
    Ok(Outcome::Done)
}
