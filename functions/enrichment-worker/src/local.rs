//! The enrichment worker on one machine: consumes the in-process enrichment
//! queue with the same `process` as the Lambda. A retry re-delivers the
//! message after its backoff; after `ENRICHMENT_MAX_ATTEMPTS` receives, or
//! for a poison message, it is dropped with an error log (the reason is
//! recorded in PostgreSQL). Without provider credentials the local sinks
//! answer (said loudly at start).

use crate::{Deps, Message, Outcome, process};
use crm_platform::queue::LocalMessage;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Jobs processed at once (the Lambda's maximum concurrency plays this part in AWS).
const CONCURRENCY: usize = 2;

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
                    Outcome::Retry { delay, .. } => {
                        tokio::time::sleep(delay).await;
                        let _ = retry_tx.send((msg, receive_count + 1));
                    }
                    Outcome::DeadLetter { reason } => tracing::error!(
                        message_id = %id,
                        reason = %reason,
                        "enrichment message dead-lettered: dropped locally, reason recorded"
                    ),
                }
            });
        }
    })
}
