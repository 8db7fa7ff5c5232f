//! The workers' local consumer loop (`make run`): one in-process queue
//! consumed with the same `process` the Lambda runs, a bounded number of
//! messages at once, a retry received again after its delay with the receive
//! count raised, and a message dropped with an error log once it belongs in
//! the dead-letter queue (its reason is already recorded in PostgreSQL;
//! there is no local DLQ) or has used up `max_receives`.

use crate::queue::LocalMessage;
use std::{future::Future, sync::Arc, time::Duration};
use tokio::sync::{Semaphore, mpsc};

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
pub fn spawn<F, Fut>(
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
