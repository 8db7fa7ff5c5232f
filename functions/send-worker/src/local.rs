//! The send worker on one machine: consumes the in-process send queue with
//! the same `process` as the Lambda. A retry re-delivers the message after
//! the backoff delay; after `SEND_MAX_ATTEMPTS` receives, or when a message
//! belongs in the dead-letter queue, it is dropped with an error log (the
//! reason is already recorded in PostgreSQL; there is no local DLQ).

use crate::{Deps, Message, Outcome, process};
use crm_platform::queue::LocalMessage;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Messages processed at once (each holds a pool connection only briefly).
const CONCURRENCY: usize = 8;

pub fn spawn(
    mut queue: mpsc::UnboundedReceiver<LocalMessage>,
    deps: Deps,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (retry_tx, mut retries) = mpsc::unbounded_channel::<(LocalMessage, u32)>();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            let (msg, receive_count) = tokio::select! {
                Some(msg) = queue.recv() => (msg, 1),
                Some(again) = retries.recv() => again,
                else => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (deps, retry_tx) = (deps.clone(), retry_tx.clone());
            tokio::spawn(async move {
                let id = msg.message_id.to_string();
                let outcome = {
                    let _permit = permit;
                    let m = Message {
                        message_id: &id,
                        body: &msg.body,
                        receive_count,
                    };
                    process(&m, &deps).await
                };
                match outcome {
                    Outcome::Done => {}
                    Outcome::Retry { delay } if receive_count < deps.config.max_attempts => {
                        tokio::time::sleep(delay).await;
                        let _ = retry_tx.send((msg, receive_count + 1));
                    }
                    Outcome::Retry { .. } => tracing::error!(
                        message_id = %id,
                        receive_count,
                        "send message still failing after SEND_MAX_ATTEMPTS receives: dropped (SQS would dead-letter it)"
                    ),
                    Outcome::DeadLetter { reason } => tracing::error!(
                        message_id = %id,
                        reason = %reason,
                        "send message dead-lettered: dropped locally, reason recorded"
                    ),
                }
            });
        }
    })
}
