//! The workers' local consumer loop (`make run`): one queue consumed with
//! the same `process` the Lambda runs, a bounded number of messages at once,
//! a retry received again after its delay with the receive count raised,
//! and a message dropped with an error log once it belongs in the
//! dead-letter queue (its reason is already recorded in PostgreSQL; there is
//! no local DLQ) or has used up `max_receives`.
//!
//! Two sources: the PostgreSQL-backed [`PgQueue`] the local runner uses (as
//! durable as SQS: a message is gone only when its consumer acknowledged
//! it, and a claim of a consumer that died lapses at its visibility
//! deadline), and an in-process channel for tests that need no durability.

use crate::{db::PgPool, queue::LocalMessage};
use crm_domain::outbox::{BoxFuture, Publisher, QueueName, local_queue as store};
use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};
use tokio::sync::{Notify, Semaphore, mpsc};
use uuid::Uuid;

/// Where a local consumer receives its messages.
pub enum Source {
    /// An in-process channel: nothing survives the process (tests).
    Channel(mpsc::UnboundedReceiver<LocalMessage>),
    /// One queue of a [`PgQueue`].
    Durable { queues: PgQueue, queue: QueueName },
}

impl From<mpsc::UnboundedReceiver<LocalMessage>> for Source {
    fn from(rx: mpsc::UnboundedReceiver<LocalMessage>) -> Self {
        Source::Channel(rx)
    }
}

/// The local runner's queues in PostgreSQL (`local_queue_messages`): the
/// publisher the outbox relay and the workers publish to, and the source
/// each local worker receives from.
#[derive(Clone)]
pub struct PgQueue {
    pool: PgPool,
    wake: Arc<HashMap<QueueName, Notify>>,
    visibility: Duration,
}

impl PgQueue {
    /// How long a claim lasts without a heartbeat: a consumer that died is
    /// replaced after this (the heartbeat extends a live one every third).
    pub const VISIBILITY: Duration = Duration::from_secs(30);
    /// How often an idle consumer looks for messages published by another
    /// process (a publish in this one wakes it at once).
    pub const POLL: Duration = Duration::from_millis(500);
    /// Acknowledged messages are kept this long, so that a re-publish of the
    /// same id (a relay that died before marking its row) is recognised.
    pub const KEEP_ACKED: Duration = Duration::from_secs(24 * 60 * 60);

    pub fn new(pool: PgPool) -> Self {
        Self::with_visibility(pool, Self::VISIBILITY)
    }

    /// [`PgQueue::new`] with another visibility timeout (tests of a lapsed claim).
    pub fn with_visibility(pool: PgPool, visibility: Duration) -> Self {
        let wake = QueueName::ALL
            .into_iter()
            .map(|q| (q, Notify::new()))
            .collect();
        Self {
            pool,
            wake: Arc::new(wake),
            visibility,
        }
    }

    /// The source a worker consumes `queue` from.
    pub fn source(&self, queue: QueueName) -> Source {
        Source::Durable {
            queues: self.clone(),
            queue,
        }
    }

    /// Deletes acknowledged messages older than [`PgQueue::KEEP_ACKED`] (a bounded batch).
    pub async fn purge(&self) -> anyhow::Result<u64> {
        let client = self.pool.get().await?;
        store::purge_acked(&client, Self::KEEP_ACKED, 1_000).await
    }
}

impl Publisher for PgQueue {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        message_id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            store::publish(&client, queue, message_id, body).await?;
            self.wake[&queue].notify_one();
            Ok(())
        })
    }
}

/// What a worker made of one message, in the loop's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    Done,
    /// Receive it again after `after`.
    Retry {
        after: Duration,
    },
    /// SQS would move it to the dead-letter queue.
    DeadLetter {
        reason: String,
    },
}

/// How one queue is consumed.
#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    /// The queue's name in logs, e.g. "send".
    pub queue: &'static str,
    /// Messages processed at once.
    pub concurrency: usize,
    /// Receives before a still-failing message is dropped (SQS's redrive count).
    pub max_receives: u32,
}

/// Spawns the loop; `handle(message, receive_count)` processes one message.
/// Aborting the returned task stops the loop and every message in flight
/// (what a killed process does): durable messages are received again after
/// their visibility deadline.
pub fn spawn<F, Fut>(
    source: impl Into<Source>,
    consumer: Consumer,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(LocalMessage, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LocalOutcome> + Send + 'static,
{
    match source.into() {
        Source::Channel(rx) => spawn_channel(rx, consumer, handle),
        Source::Durable { queues, queue } => {
            tokio::spawn(run_durable(queues, queue, consumer, Arc::new(handle)))
        }
    }
}

/// Receives from PostgreSQL while there are free slots, wakes on a local
/// publish or every [`PgQueue::POLL`], acknowledges each outcome.
async fn run_durable<F, Fut>(queues: PgQueue, queue: QueueName, consumer: Consumer, handle: Arc<F>)
where
    F: Fn(LocalMessage, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LocalOutcome> + Send + 'static,
{
    let slots = consumer.concurrency.max(1);
    // Dropping this set (an aborted loop) aborts every message in flight.
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        while jobs.try_join_next().is_some() {}
        let free = slots - jobs.len().min(slots);
        if free == 0 {
            jobs.join_next().await;
            continue;
        }
        let received = async {
            let client = queues.pool.get().await?;
            store::receive(&client, queue, free as i64, queues.visibility).await
        }
        .await;
        match received {
            Ok(messages) if !messages.is_empty() => {
                for m in messages {
                    jobs.spawn(one_durable(queues.clone(), consumer, handle.clone(), m));
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = queues.wake[&queue].notified() => {}
                    _ = tokio::time::sleep(PgQueue::POLL) => {}
                    Some(_) = jobs.join_next() => {}
                }
            }
            Err(e) => {
                tracing::warn!(queue = consumer.queue, error = %crm_domain::db::loggable(&e), "local queue receive failed");
                tokio::time::sleep(PgQueue::POLL * 2).await;
            }
        }
    }
}

/// Processes one claimed message, keeping its claim alive meanwhile, then
/// acknowledges (done or dropped) or releases it (retry). A failed
/// acknowledgement leaves the claim to lapse: the message comes back.
async fn one_durable<F, Fut>(
    queues: PgQueue,
    consumer: Consumer,
    handle: Arc<F>,
    m: store::Received,
) where
    F: Fn(LocalMessage, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LocalOutcome> + Send + 'static,
{
    let msg = LocalMessage {
        message_id: m.message_id,
        body: m.body,
    };
    let work = handle(msg, m.receive_count);
    let heartbeat = async {
        loop {
            tokio::time::sleep(queues.visibility / 3).await;
            if let Ok(client) = queues.pool.get().await {
                let _ = store::extend(&client, m.id, queues.visibility).await;
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        never = heartbeat => never,
    };
    let done = async {
        let client = queues.pool.get().await?;
        match &outcome {
            LocalOutcome::Done => store::ack(&client, m.id, None).await,
            LocalOutcome::Retry { after } if m.receive_count < consumer.max_receives => {
                store::release(&client, m.id, *after).await
            }
            LocalOutcome::Retry { .. } => {
                tracing::error!(
                    queue = consumer.queue,
                    message_id = %m.message_id,
                    receive_count = m.receive_count,
                    "message still failing after its last receive: dropped (SQS would dead-letter it)"
                );
                store::ack(&client, m.id, Some("still failing after its last receive")).await
            }
            LocalOutcome::DeadLetter { reason } => {
                tracing::error!(
                    queue = consumer.queue,
                    message_id = %m.message_id,
                    reason = %reason,
                    "message dead-lettered: dropped locally, reason recorded"
                );
                store::ack(&client, m.id, Some(reason)).await
            }
        }
    };
    if let Err(e) = done.await {
        tracing::warn!(
            queue = consumer.queue,
            message_id = %m.message_id,
            error = %crm_domain::db::loggable(&e),
            "could not acknowledge a local queue message: it is received again after its deadline"
        );
    }
}

fn spawn_channel<F, Fut>(
    mut queue: mpsc::UnboundedReceiver<LocalMessage>,
    consumer: Consumer,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(LocalMessage, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LocalOutcome> + Send + 'static,
{
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        let (retry_tx, mut retries) = mpsc::unbounded_channel::<(LocalMessage, u32)>();
        let permits = Arc::new(Semaphore::new(consumer.concurrency.max(1)));
        loop {
            let (msg, receive_count) = tokio::select! {
                Some(msg) = queue.recv() => (msg, 1),
                Some(again) = retries.recv() => again,
                else => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (handle, retry_tx) = (handle.clone(), retry_tx.clone());
            tokio::spawn(async move {
                let id = msg.message_id;
                let outcome = {
                    let _permit = permit;
                    handle(msg.clone(), receive_count).await
                };
                match outcome {
                    LocalOutcome::Done => {}
                    LocalOutcome::Retry { after } if receive_count < consumer.max_receives => {
                        tokio::time::sleep(after).await;
                        let _ = retry_tx.send((msg, receive_count + 1));
                    }
                    LocalOutcome::Retry { .. } => tracing::error!(
                        queue = consumer.queue,
                        message_id = %id,
                        receive_count,
                        "message still failing after its last receive: dropped (SQS would dead-letter it)"
                    ),
                    LocalOutcome::DeadLetter { reason } => tracing::error!(
                        queue = consumer.queue,
                        message_id = %id,
                        reason = %reason,
                        "message dead-lettered: dropped locally, reason recorded"
                    ),
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use uuid::Uuid;

    #[tokio::test]
    async fn retries_come_back_with_a_higher_receive_count_until_the_last_receive() {
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        let s = seen.clone();
        let task = spawn(
            rx,
            Consumer {
                queue: "test",
                concurrency: 2,
                max_receives: 3,
            },
            move |msg: LocalMessage, n| {
                let (s, done_tx) = (s.clone(), done_tx.clone());
                async move {
                    s.lock().unwrap().push((msg.body.clone(), n));
                    let _ = done_tx.send(());
                    match msg.body.as_str() {
                        "retry" => LocalOutcome::Retry {
                            after: Duration::from_millis(1),
                        },
                        "poison" => LocalOutcome::DeadLetter {
                            reason: "not a job".into(),
                        },
                        _ => LocalOutcome::Done,
                    }
                }
            },
        );
        for body in ["ok", "retry", "poison"] {
            tx.send(LocalMessage {
                message_id: Uuid::new_v4(),
                body: body.into(),
            })
            .unwrap();
        }
        // ok once, poison once, retry on receives 1, 2 and 3 then dropped.
        for _ in 0..5 {
            done_rx.recv().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ok".to_string(), 1),
                ("poison".to_string(), 1),
                ("retry".to_string(), 1),
                ("retry".to_string(), 2),
                ("retry".to_string(), 3),
            ]
        );
        drop(tx);
        task.abort();
    }
}
