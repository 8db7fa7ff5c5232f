//! The local runner's durable queues (`local_queue_messages`): SQS's
//! contract on PostgreSQL. A publish is kept once per `message_id`; a
//! receive claims messages with `FOR UPDATE SKIP LOCKED` and pushes their
//! visibility to a deadline; a message is gone only when its consumer
//! acknowledged it. A consumer that died without acknowledging (SIGKILL)
//! holds nothing: its claims lapse at their deadline and the messages are
//! received again with a higher receive count.

use super::QueueName;
use crate::db::GenericClient;
use anyhow::Context;
use std::time::Duration;
use uuid::Uuid;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: i64,
    pub message_id: Uuid,
    pub body: String,
    /// 1 on the first receive, as SQS's `ApproximateReceiveCount`.
    pub receive_count: u32,
}

/// Whether a publish added a message or met one already kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    New,
    /// The same `message_id` was published before (pending or acknowledged).
    Duplicate,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Keeps a message for `queue`, receivable now; a second publish of the same id is a no-op.
pub async fn publish(
    db: &impl GenericClient,
    queue: QueueName,
    message_id: Uuid,
    body: &str,
) -> anyhow::Result<Published> {
    let stmt = db
        .prepare_cached(
            "insert into local_queue_messages (queue, message_id, body) values ($1, $2, $3) \
             on conflict (message_id) do nothing",
        )
        .await
        .context("preparing the local queue insert")?;
    let n = db
        .execute(&stmt, &[&queue.as_str(), &message_id, &body])
        .await
        .context("keeping a local queue message")?;
    Ok(if n == 1 {
        Published::New
    } else {
        Published::Duplicate
    })
}

/// Claims up to `limit` receivable messages of `queue`, oldest first,
/// invisible to other receivers for `visibility`.
pub async fn receive(
    db: &impl GenericClient,
    queue: QueueName,
    limit: i64,
    visibility: Duration,
) -> anyhow::Result<Vec<Received>> {
    let stmt = db
        .prepare_cached(
            "update local_queue_messages m \
                set receive_count = m.receive_count + 1, \
                    visible_at = now() + make_interval(secs => $3::float8 / 1000) \
              where m.id in (select id from local_queue_messages \
                              where queue = $1 and acked_at is null and visible_at <= now() \
                              order by visible_at, id limit $2 for update skip locked) \
             returning m.id, m.message_id, m.body, m.receive_count",
        )
        .await
        .context("preparing the local queue receive")?;
    let rows = db
        .query(&stmt, &[&queue.as_str(), &limit, &millis(visibility)])
        .await
        .context("receiving local queue messages")?;
    let mut got: Vec<Received> = rows
        .iter()
        .map(|r| Received {
            id: r.get(0),
            message_id: r.get(1),
            body: r.get(2),
            receive_count: u32::try_from(r.get::<_, i32>(3)).unwrap_or(1),
        })
        .collect();
    got.sort_by_key(|m| m.id);
    Ok(got)
}

/// Keeps a claimed message invisible for `visibility` from now (a consumer
/// still working on it: SQS's ChangeMessageVisibility heartbeat).
pub async fn extend(db: &impl GenericClient, id: i64, visibility: Duration) -> anyhow::Result<()> {
    db.execute(
        "update local_queue_messages set visible_at = now() + make_interval(secs => $2::float8 / 1000) \
         where id = $1 and acked_at is null",
        &[&id, &millis(visibility)],
    )
    .await
    .context("extending a local queue claim")?;
    Ok(())
}

/// The message is receivable again after `delay` (a retry with backoff).
pub async fn release(db: &impl GenericClient, id: i64, delay: Duration) -> anyhow::Result<()> {
    extend(db, id, delay).await
}

/// The consumer is done with the message: deleted, as SQS deletes it, but
/// kept a day as acknowledged so a re-publish of the same id is a no-op.
/// `dead_reason` is set for a message dropped as SQS would dead-letter it.
pub async fn ack(
    db: &impl GenericClient,
    id: i64,
    dead_reason: Option<&str>,
) -> anyhow::Result<()> {
    db.execute(
        "update local_queue_messages set acked_at = now(), visible_at = 'infinity', \
                dead_reason = left($2, 500) \
         where id = $1 and acked_at is null",
        &[&id, &dead_reason],
    )
    .await
    .context("acknowledging a local queue message")?;
    Ok(())
}

/// Deletes up to `limit` messages acknowledged more than `older_than` ago.
pub async fn purge_acked(
    db: &impl GenericClient,
    older_than: Duration,
    limit: i64,
) -> anyhow::Result<u64> {
    db.execute(
        "delete from local_queue_messages where id in (select id from local_queue_messages \
           where acked_at < now() - make_interval(secs => $1::float8 / 1000) limit $2)",
        &[&millis(older_than), &limit],
    )
    .await
    .context("purging acknowledged local queue messages")
}

/// Messages of `queue` not yet acknowledged (pending or claimed).
pub async fn unacked(db: &impl GenericClient, queue: QueueName) -> anyhow::Result<i64> {
    let row = db
        .query_one(
            "select count(*) from local_queue_messages where queue = $1 and acked_at is null",
            &[&queue.as_str()],
        )
        .await
        .context("counting local queue messages")?;
    Ok(row.get(0))
}
