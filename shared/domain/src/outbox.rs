//! The transactional outbox. Work for a queue is written as a row in the
//! same transaction as the change that caused it; a relay publishes rows
//! after commit and marks them, so a crash between commit and publish delays
//! a message but never drops it. Publishing is at-least-once: every message
//! carries a stable `message_id` that consumers deduplicate on.

pub mod local_queue;
pub mod stale;

use crate::db::GenericClient;
use anyhow::Context;
use serde_json::Value;
use std::{future::Future, pin::Pin};
use uuid::Uuid;

/// The queues work is handed to (the `outbox.queue` CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Send,
    Enrichment,
    Media,
    /// Campaign snapshots and paced fan-out (the campaign worker).
    Campaign,
}

impl QueueName {
    pub const ALL: [QueueName; 4] = [
        QueueName::Send,
        QueueName::Enrichment,
        QueueName::Media,
        QueueName::Campaign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Send => "send",
            QueueName::Enrichment => "enrichment",
            QueueName::Media => "media",
            QueueName::Campaign => "campaign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The queue port: SQS in AWS, an in-process channel locally.
pub trait Publisher: Send + Sync {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        message_id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Writes a message for `queue`; call it inside the transaction of the change.
pub async fn enqueue(
    db: &impl GenericClient,
    queue: QueueName,
    body: &Value,
) -> anyhow::Result<Uuid> {
    let stmt = db
        .prepare_cached("insert into outbox (queue, body) values ($1, $2) returning message_id")
        .await
        .context("preparing outbox insert")?;
    let row = db
        .query_one(&stmt, &[&queue.as_str(), body])
        .await
        .context("writing an outbox row")?;
    Ok(row.get(0))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub failed: usize,
}

/// Publishes up to `limit` unpublished rows, oldest first. Rows are locked
/// with SKIP LOCKED, so concurrent relays split the work instead of sending
/// a row twice; a row whose publish fails keeps its place with the error.
pub async fn relay_batch(
    client: &mut deadpool_postgres::Client,
    publisher: &dyn Publisher,
    limit: i64,
) -> anyhow::Result<RelayReport> {
    let tx = client
        .transaction()
        .await
        .context("starting the relay transaction")?;
    let stmt = tx
        .prepare_cached(
            "select id, queue, message_id, body::text from outbox where published_at is null \
             order by id limit $1 for update skip locked",
        )
        .await
        .context("preparing the outbox scan")?;
    let rows = tx
        .query(&stmt, &[&limit])
        .await
        .context("reading unpublished outbox rows")?;
    publish_locked(tx, &rows, publisher).await
}

/// Publishes exactly the rows with these `message_id`s (what one request
/// just enqueued, as `enqueue` returned them) that are still unpublished:
/// the after-commit fast path, which must not take other requests' rows.
/// Same locking and marking as [`relay_batch`]: a row another relay holds
/// right now is skipped (it publishes it), a published one is left alone,
/// a failed publish keeps the row for the scheduled relay.
pub async fn relay_ids(
    client: &mut deadpool_postgres::Client,
    publisher: &dyn Publisher,
    message_ids: &[Uuid],
) -> anyhow::Result<RelayReport> {
    if message_ids.is_empty() {
        return Ok(RelayReport::default());
    }
    let tx = client
        .transaction()
        .await
        .context("starting the relay transaction")?;
    let stmt = tx
        .prepare_cached(
            "select id, queue, message_id, body::text from outbox \
             where message_id = any($1) and published_at is null \
             order by id for update skip locked",
        )
        .await
        .context("preparing the outbox lookup")?;
    let rows = tx
        .query(&stmt, &[&message_ids])
        .await
        .context("reading the request's outbox rows")?;
    publish_locked(tx, &rows, publisher).await
}

/// How many publishes one relay call has in flight at once: a fan-out of
/// thousands of rows is bounded by SQS's latency ÷ this, not by one round
/// trip per row.
const PUBLISH_CONCURRENCY: usize = 16;

/// Publishes rows locked by `tx` (up to [`PUBLISH_CONCURRENCY`] at a time),
/// marks them, commits.
async fn publish_locked(
    tx: deadpool_postgres::Transaction<'_>,
    rows: &[tokio_postgres::Row],
    publisher: &dyn Publisher,
) -> anyhow::Result<RelayReport> {
    use futures_util::stream::{self, StreamExt};
    let mut report = RelayReport::default();
    let mut published: Vec<i64> = Vec::with_capacity(rows.len());
    let owned: Vec<(i64, String, Uuid, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let outcomes: Vec<(i64, Uuid, anyhow::Result<()>)> = stream::iter(owned)
        .map(|(id, queue_name, message_id, body)| async move {
            let outcome = match QueueName::parse(&queue_name) {
                Some(queue) => publisher.publish(queue, message_id, &body).await,
                None => Err(anyhow::anyhow!("unknown queue {queue_name}")),
            };
            (id, message_id, outcome)
        })
        .buffered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    for (id, message_id, outcome) in outcomes {
        match outcome {
            Ok(()) => published.push(id),
            Err(err) => {
                report.failed += 1;
                tracing::warn!(outbox_id = id, %message_id, error = %crate::db::loggable(&err), "outbox publish failed");
                tx.execute(
                    "update outbox set attempts = attempts + 1, last_error = left($2, 500) where id = $1",
                    &[&id, &crate::db::loggable(&err)],
                )
                .await
                .context("recording an outbox publish failure")?;
            }
        }
    }
    if !published.is_empty() {
        tx.execute(
            "update outbox set published_at = now(), attempts = attempts + 1, last_error = null where id = any($1)",
            &[&published],
        )
        .await
        .context("marking outbox rows published")?;
    }
    tx.commit().await.context("committing the relay batch")?;
    report.published = published.len();
    Ok(report)
}

/// The unpublished outbox: what the relay's backlog metric reports.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Rows not yet published.
    pub pending: i64,
    /// Age of the oldest of them, in seconds (0 when there is none).
    pub oldest_age_secs: f64,
}

/// Counts unpublished rows (the partial index `outbox_unpublished_idx`
/// keeps this cheap however large the published history grows).
pub async fn backlog(db: &impl GenericClient) -> anyhow::Result<Backlog> {
    let row = db
        .query_one(
            "select count(*), coalesce(extract(epoch from now() - min(created_at))::float8, 0) \
             from outbox where published_at is null",
            &[],
        )
        .await
        .context("counting unpublished outbox rows")?;
    Ok(Backlog {
        pending: row.get(0),
        oldest_age_secs: row.get(1),
    })
}
